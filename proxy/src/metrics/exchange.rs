//! Istio's peer metadata exchange over HTTP: each sidecar tells the other which workload it
//! is, so that both reporters fill the peer's labels.
//!
//! ```text
//!  client sidecar ── request + x-envoy-peer-metadata-id, x-envoy-peer-metadata ──► server sidecar
//!       (its own, on every outbound request                (read and removed: the app never
//!        to a mesh service)                                  sees them; the source's labels)
//!  client sidecar ◄── response + the server's own pair ───── server sidecar (only to a client
//!       (read and removed: the destination's labels)         that sent its own)
//! ```
//!
//! The value is Istio's: a `google.protobuf.Struct` of the node's metadata (`WORKLOAD_NAME`,
//! `NAMESPACE`, `CLUSTER_ID`, `SERVICE_ACCOUNT`, `LABELS`, …), protobuf-encoded, then base64.
//! Decoding is done once per distinct value: each connection keeps the last few it saw.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use http::{HeaderMap, HeaderName, HeaderValue};
use prost::Message as _;

use super::labels::{Peer, WorkloadLabels};

/// The sender's node id.
pub static PEER_ID: HeaderName = HeaderName::from_static("x-envoy-peer-metadata-id");
/// The sender's metadata (base64 of a protobuf `Struct`).
pub static PEER_METADATA: HeaderName = HeaderName::from_static("x-envoy-peer-metadata");

/// Values longer than this are not decoded (the peer is `unknown`): a metadata header is a few
/// hundred bytes.
const MAX_VALUE_LEN: usize = 8 * 1024;

/// This proxy's pair of header values, made once.
#[derive(Debug, Clone)]
pub struct OwnHeaders {
    pub id: HeaderValue,
    pub metadata: HeaderValue,
}

/// This proxy's node metadata as Istio exchanges it: `NAME`, `NAMESPACE`, `WORKLOAD_NAME`,
/// `CLUSTER_ID`, `SERVICE_ACCOUNT` and the `LABELS` its peers' labels are derived from.
pub fn own_metadata(pod: &str, me: &WorkloadLabels) -> Struct {
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_string())),
    };
    let mut labels = HashMap::new();
    for (key, value) in [
        ("app", &me.app),
        ("version", &me.version),
        ("service.istio.io/canonical-name", &me.canonical_service),
        (
            "service.istio.io/canonical-revision",
            &me.canonical_revision,
        ),
    ] {
        if !value.is_empty() {
            labels.insert(key.to_string(), text(value));
        }
    }
    let mut fields = HashMap::new();
    fields.insert("NAME".to_string(), text(pod));
    fields.insert("NAMESPACE".to_string(), text(&me.namespace));
    fields.insert("WORKLOAD_NAME".to_string(), text(&me.workload));
    fields.insert("CLUSTER_ID".to_string(), text(&me.cluster));
    if !me.service_account.is_empty() {
        fields.insert("SERVICE_ACCOUNT".to_string(), text(&me.service_account));
    }
    fields.insert(
        "LABELS".to_string(),
        Value {
            kind: Some(Kind::StructValue(Struct { fields: labels })),
        },
    );
    Struct { fields }
}

impl OwnHeaders {
    /// The headers that say `node_id` and `me`.
    pub fn new(node_id: &str, pod: &str, me: &WorkloadLabels) -> Self {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(own_metadata(pod, me).encode_to_vec());
        Self {
            id: value(node_id),
            metadata: value(&encoded),
        }
    }

    /// Adds the pair to `headers` (replacing whatever the app put there).
    pub fn insert(&self, headers: &mut HeaderMap) {
        headers.insert(PEER_ID.clone(), self.id.clone());
        headers.insert(PEER_METADATA.clone(), self.metadata.clone());
    }
}

/// A header value whose clones share one buffer.
fn value(s: &str) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(s.as_bytes()))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Removes the peer pair from `headers`; the metadata value if there was one.
pub fn take(headers: &mut HeaderMap) -> Option<HeaderValue> {
    // Most requests have neither: one lookup each, no removal.
    headers.remove(&PEER_ID);
    headers.remove(&PEER_METADATA)
}

/// Why a metadata value was not understood (the peer is then `unknown`).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("longer than {MAX_VALUE_LEN} bytes")]
    TooLong,
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("not a protobuf Struct: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("names no workload (neither WORKLOAD_NAME nor NAME)")]
    NoWorkload,
}

/// The workload a metadata value describes, with Istio's fallbacks for what it leaves out.
pub fn decode(value: &HeaderValue) -> Result<Peer, DecodeError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(DecodeError::TooLong);
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.as_bytes())?;
    decode_metadata(&Struct::decode(bytes.as_slice())?)
}

/// The workload of a node metadata `Struct` (an HTTP header's, or a TCP exchange frame's).
pub fn decode_metadata(metadata: &Struct) -> Result<Peer, DecodeError> {
    let text = |key: &str| match metadata.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.as_str(),
        _ => "",
    };
    let labels: BTreeMap<String, String> =
        match metadata.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
            Some(Kind::StructValue(labels)) => labels
                .fields
                .iter()
                .filter_map(|(k, v)| match &v.kind {
                    Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
                    _ => None,
                })
                .collect(),
            _ => BTreeMap::new(),
        };
    let workload = match (text("WORKLOAD_NAME"), text("NAME")) {
        ("", "") => return Err(DecodeError::NoWorkload),
        ("", name) | (name, _) => name,
    };
    Ok(Peer::new(WorkloadLabels::from_pod(
        workload,
        text("NAMESPACE"),
        &labels,
        text("CLUSTER_ID"),
        text("SERVICE_ACCOUNT"),
    )))
}

/// The last few metadata values a connection saw, decoded: a connection's requests come from
/// (inbound) or go to (outbound) the same few workloads, so most lookups are one comparison.
#[derive(Debug, Default)]
pub struct PeerCache {
    slots: [Option<(HeaderValue, Peer)>; 4],
    next: usize,
}

impl PeerCache {
    /// The workload `value` describes (`unknown` when it cannot be decoded).
    pub fn peer(&mut self, value: &HeaderValue) -> Peer {
        if let Some((_, peer)) = self.slots.iter().flatten().find(|(v, _)| v == value) {
            return peer.clone();
        }
        let peer = decode(value).unwrap_or_else(|e| {
            tracing::debug!(error = %e, "x-envoy-peer-metadata not understood: peer unknown");
            Peer::unknown()
        });
        self.slots[self.next] = Some((value.clone(), peer.clone()));
        self.next = (self.next + 1) % self.slots.len();
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> WorkloadLabels {
        let labels: BTreeMap<String, String> = [("app", "reviews"), ("version", "v2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorkloadLabels::from_pod(
            "reviews-v2",
            "default",
            &labels,
            "Kubernetes",
            "bookinfo-reviews",
        )
    }

    #[test]
    fn own_headers_decode_to_the_same_workload() {
        let own = OwnHeaders::new(
            "sidecar~1.2.3.4~reviews-v2-abc.default~default.svc.cluster.local",
            "reviews-v2-abc",
            &me(),
        );
        let mut headers = HeaderMap::new();
        own.insert(&mut headers);
        let value = take(&mut headers).expect("metadata header");
        assert!(headers.is_empty(), "both headers removed");
        let peer = decode(&value).unwrap();
        assert_eq!(peer.labels(), &me());
        assert_eq!(
            peer.spiffe_id("cluster.local").as_deref(),
            Some("spiffe://cluster.local/ns/default/sa/bookinfo-reviews")
        );
    }

    #[test]
    fn istio_style_metadata_gets_istios_fallbacks() {
        // What an Istio sidecar sends: the pod name, the workload, labels with `app` only.
        let text = |s: &str| Value {
            kind: Some(Kind::StringValue(s.to_string())),
        };
        let mut labels = HashMap::new();
        labels.insert("app".to_string(), text("ratings"));
        let mut fields = HashMap::new();
        fields.insert("NAME".to_string(), text("ratings-v1-7d9f"));
        fields.insert("NAMESPACE".to_string(), text("bookinfo"));
        fields.insert(
            "LABELS".to_string(),
            Value {
                kind: Some(Kind::StructValue(Struct { fields: labels })),
            },
        );
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(Struct { fields }.encode_to_vec());
        let peer = decode(&HeaderValue::from_str(&encoded).unwrap()).unwrap();
        let l = peer.labels();
        assert_eq!(
            l.workload, "ratings-v1-7d9f",
            "NAME when WORKLOAD_NAME is missing"
        );
        assert_eq!(l.canonical_service, "ratings");
        assert_eq!(l.canonical_revision, "latest");
        assert_eq!(l.version, "");
    }

    #[test]
    fn garbage_is_an_unknown_peer_never_a_panic() {
        let mut cache = PeerCache::default();
        for bad in ["not base64!", "AAAA", "////", ""] {
            let value = HeaderValue::from_str(bad).unwrap();
            assert_eq!(cache.peer(&value), Peer::unknown(), "{bad:?}");
        }
        let long = HeaderValue::from_str(&"A".repeat(MAX_VALUE_LEN + 4)).unwrap();
        assert!(matches!(decode(&long), Err(DecodeError::TooLong)));
    }

    #[test]
    fn the_cache_decodes_each_value_once() {
        let own = OwnHeaders::new("id", "pod", &me());
        let mut cache = PeerCache::default();
        let first = cache.peer(&own.metadata);
        let again = cache.peer(&own.metadata);
        assert!(first.same(&again), "the cached peer, not a new one");
    }
}
