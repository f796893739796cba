//! What the admin port and the health metrics show of xDS: the connection, per type the
//! accepted version and counts of accepted and rejected updates, and per resource the proto
//! as accepted (for `/config_dump`) with its last rejection.
//!
//! ```text
//!  AdsClient ─connected / disconnected─► ConfigStore ─► XdsState (atomics)
//!  ConfigStore::apply_response ─ per resource: accepted Any │ rejected Any + why ─► XdsState::record
//!  scrape (metrics/health.rs), /config_dump (admin/config_dump.rs) ◄── read, under one short lock
//! ```
//!
//! A resource keeps the version and time of the update that last changed it (an update that
//! resends the same bytes changes neither, as Envoy). Its rejection stays until a later
//! version of it is accepted. Memory: the accepted protos' bytes, once (not copied: the store
//! hands over the `Any` it decoded).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use envoy_types::pb::google::protobuf::Any;
use parking_lot::Mutex;

/// The xDS side of the proxy, shared by the store (writer), the admin and the metrics.
#[derive(Debug, Default)]
pub struct XdsState {
    connected: AtomicBool,
    connects: AtomicU64,
    disconnects: AtomicU64,
    types: Mutex<BTreeMap<String, TypeRecord>>,
}

/// One resource type: its accepted version, update counts and resources.
#[derive(Debug, Clone, Default)]
pub struct TypeRecord {
    /// The version of the last accepted response.
    pub version: Option<String>,
    /// When the last response was accepted.
    pub last_updated: Option<SystemTime>,
    /// Responses accepted (ACKed).
    pub accepted: u64,
    /// Responses rejected (NACKed), wholly or in part.
    pub rejected: u64,
    /// The last rejection of the type: version, when, and why.
    pub last_rejection: Option<Failure>,
    /// By resource name.
    pub resources: BTreeMap<String, ResourceRecord>,
}

/// One named resource: the version in force, and its last rejection.
#[derive(Debug, Clone, Default)]
pub struct ResourceRecord {
    pub active: Option<Accepted>,
    /// Cleared when a later version of the resource is accepted.
    pub error: Option<Failure>,
}

/// A resource as accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The version of the response that last changed it.
    pub version: String,
    pub last_updated: SystemTime,
    pub resource: Arc<Any>,
}

/// A rejected update.
#[derive(Debug, Clone)]
pub struct Failure {
    pub version: String,
    pub at: SystemTime,
    pub details: String,
    /// The rejected resource (`None` for a rejection of the type as a whole).
    pub resource: Option<Arc<Any>>,
}

/// What one response did to each named resource, from the store.
#[derive(Debug, Default)]
pub struct Outcome {
    pub accepted: Vec<(String, Any)>,
    /// Name, resource, why.
    pub rejected: Vec<(String, Any, String)>,
}

impl Outcome {
    /// Moves `name` from accepted to rejected, with `why`.
    pub fn reject(&mut self, name: &str, why: String) {
        if let Some(i) = self.accepted.iter().position(|(n, _)| n == name) {
            let (name, any) = self.accepted.remove(i);
            self.rejected.push((name, any, why));
        }
    }
}

impl XdsState {
    /// A stream to the xDS server is up.
    pub fn connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    /// The stream ended.
    pub fn disconnected(&self) {
        if self.connected.swap(false, Ordering::Relaxed) {
            self.disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Streams established, and streams lost, since start.
    pub fn connection_counts(&self) -> (u64, u64) {
        (
            self.connects.load(Ordering::Relaxed),
            self.disconnects.load(Ordering::Relaxed),
        )
    }

    /// Records a response of `type_url` at `version`: `error` when it was rejected (NACK),
    /// in whole or in part. `keep` says which resources still exist (in force or
    /// subscribed); the others are forgotten unless this response rejected them.
    pub fn record(
        &self,
        type_url: &str,
        version: &str,
        error: Option<&str>,
        outcome: Outcome,
        keep: impl Fn(&str) -> bool,
    ) {
        let now = SystemTime::now();
        let mut types = self.types.lock();
        let record = types.entry(type_url.to_string()).or_default();
        match error {
            None => {
                record.accepted = record.accepted.saturating_add(1);
                record.version = Some(version.to_string());
                record.last_updated = Some(now);
            }
            Some(details) => {
                record.rejected = record.rejected.saturating_add(1);
                record.last_rejection = Some(Failure {
                    version: version.to_string(),
                    at: now,
                    details: details.to_string(),
                    resource: None,
                });
            }
        }
        for (name, any) in outcome.accepted {
            let entry = record.resources.entry(name).or_default();
            entry.error = None;
            let unchanged = entry
                .active
                .as_ref()
                .is_some_and(|a| a.resource.value == any.value);
            if !unchanged {
                entry.active = Some(Accepted {
                    version: version.to_string(),
                    last_updated: now,
                    resource: Arc::new(any),
                });
            }
        }
        let mut rejected_now = HashSet::new();
        for (name, any, details) in outcome.rejected {
            rejected_now.insert(name.clone());
            record.resources.entry(name).or_default().error = Some(Failure {
                version: version.to_string(),
                at: now,
                details,
                resource: Some(Arc::new(any)),
            });
        }
        record
            .resources
            .retain(|name, _| keep(name) || rejected_now.contains(name));
    }

    /// A copy of one type's record.
    pub fn type_record(&self, type_url: &str) -> Option<TypeRecord> {
        self.types.lock().get(type_url).cloned()
    }

    /// Per type: version, accepted and rejected counts (the metrics' view: no resources).
    pub fn summaries(&self) -> Vec<(String, Option<String>, u64, u64)> {
        self.types
            .lock()
            .iter()
            .map(|(t, r)| (t.clone(), r.version.clone(), r.accepted, r.rejected))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(bytes: &[u8]) -> Any {
        Any {
            type_url: "t".into(),
            value: bytes.to_vec(),
        }
    }

    #[test]
    fn a_rejection_stays_until_a_later_version_is_accepted() {
        let state = XdsState::default();
        let ok = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            move |n: &str| names.iter().any(|m| m == n)
        };
        state.record(
            "t",
            "1",
            None,
            Outcome {
                accepted: vec![("a".into(), any(b"a1")), ("b".into(), any(b"b1"))],
                rejected: vec![],
            },
            ok(&["a", "b"]),
        );
        state.record(
            "t",
            "2",
            Some("a is bad"),
            Outcome {
                accepted: vec![("b".into(), any(b"b1"))],
                rejected: vec![("a".into(), any(b"a2"), "a is bad".into())],
            },
            ok(&["a", "b"]),
        );
        let t = state.type_record("t").unwrap();
        assert_eq!((t.accepted, t.rejected), (1, 1));
        assert_eq!(t.version.as_deref(), Some("1"));
        let a = &t.resources["a"];
        assert_eq!(
            a.active.as_ref().unwrap().version,
            "1",
            "the old one serves"
        );
        assert_eq!(a.error.as_ref().unwrap().version, "2");
        assert_eq!(
            t.resources["b"].active.as_ref().unwrap().version,
            "1",
            "unchanged bytes keep their version"
        );
        state.record(
            "t",
            "3",
            None,
            Outcome {
                accepted: vec![("a".into(), any(b"a3"))],
                rejected: vec![],
            },
            ok(&["a"]),
        );
        let t = state.type_record("t").unwrap();
        assert!(t.resources["a"].error.is_none(), "cleared by version 3");
        assert_eq!(t.resources["a"].active.as_ref().unwrap().version, "3");
        assert!(!t.resources.contains_key("b"), "gone from the set");
        assert_eq!(state.summaries()[0].1.as_deref(), Some("3"));
    }

    #[test]
    fn connections_are_counted() {
        let state = XdsState::default();
        state.disconnected();
        state.connected();
        assert!(state.is_connected());
        state.disconnected();
        state.connected();
        assert_eq!(state.connection_counts(), (2, 1));
    }
}
