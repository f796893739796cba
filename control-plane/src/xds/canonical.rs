//! Resources packed with their maps in key order. prost writes a protobuf map from a `HashMap`,
//! in an order that differs between instances, so the same config would get a new version on
//! every model rebuild and controller restart: metadata (`google.protobuf.Struct`) and JSON
//! access log formats are written here field by field, sorted. The bytes decode to the same
//! messages.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value};
use prost::Message;
use prost::encoding::{self, WireType};

/// `Cluster.metadata`.
const CLUSTER_METADATA_TAG: u32 = 25;

/// `Listener.metadata`.
const LISTENER_METADATA_TAG: u32 = 6;
/// `Metadata.filter_metadata` and `Metadata.typed_filter_metadata`.
const FILTER_METADATA_TAG: u32 = 1;
const TYPED_FILTER_METADATA_TAG: u32 = 2;
/// `Struct.fields`, `Value.struct_value`, `Value.list_value`, `ListValue.values`.
const STRUCT_FIELDS_TAG: u32 = 1;
const VALUE_STRUCT_TAG: u32 = 5;
const VALUE_LIST_TAG: u32 = 6;
const LIST_VALUES_TAG: u32 = 1;

/// Packs a listener with its metadata maps (and the `Struct`s in them) in key order.
pub fn pack_listener(listener: &Listener) -> Any {
    let mut rest = listener.clone();
    let metadata = rest.metadata.take();
    pack_with_metadata(&rest, metadata.as_ref(), LISTENER_METADATA_TAG)
}

/// Packs a cluster with its metadata (Istio's `istio.services`) in key order.
pub fn pack_cluster(cluster: &Cluster) -> Any {
    let mut rest = cluster.clone();
    let metadata = rest.metadata.take();
    pack_with_metadata(&rest, metadata.as_ref(), CLUSTER_METADATA_TAG)
}

/// `message` (without its metadata) followed by `metadata` as field `tag`, maps sorted.
fn pack_with_metadata<M: Message + prost::Name>(
    message: &M,
    metadata: Option<&Metadata>,
    tag: u32,
) -> Any {
    let mut value = message.encode_to_vec();
    if let Some(metadata) = metadata {
        let mut body = Vec::new();
        let mut filter_metadata: Vec<_> = metadata.filter_metadata.iter().collect();
        filter_metadata.sort_by(|a, b| a.0.cmp(b.0));
        for (key, fields) in filter_metadata {
            map_entry(&mut body, FILTER_METADATA_TAG, key, &struct_bytes(fields));
        }
        let mut typed: Vec<_> = metadata.typed_filter_metadata.iter().collect();
        typed.sort_by(|a, b| a.0.cmp(b.0));
        for (key, any) in typed {
            map_entry(
                &mut body,
                TYPED_FILTER_METADATA_TAG,
                key,
                &any.encode_to_vec(),
            );
        }
        length_delimited(&mut value, tag, &body);
    }
    Any {
        type_url: M::type_url(),
        value,
    }
}

/// A `Struct`'s bytes, fields in key order.
pub fn struct_bytes(fields: &Struct) -> Vec<u8> {
    let mut sorted: Vec<_> = fields.fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    for (key, value) in sorted {
        map_entry(&mut out, STRUCT_FIELDS_TAG, key, &value_bytes(value));
    }
    out
}

fn value_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match &value.kind {
        Some(value::Kind::StructValue(fields)) => {
            length_delimited(&mut out, VALUE_STRUCT_TAG, &struct_bytes(fields));
        }
        Some(value::Kind::ListValue(list)) => {
            let mut items = Vec::new();
            for item in &list.values {
                length_delimited(&mut items, LIST_VALUES_TAG, &value_bytes(item));
            }
            length_delimited(&mut out, VALUE_LIST_TAG, &items);
        }
        // Scalars hold no map.
        _ => out = value.encode_to_vec(),
    }
    out
}

/// A map entry (`key` = 1, `value` = 2, a message) of the map field `tag`.
fn map_entry(buf: &mut Vec<u8>, tag: u32, key: &str, value: &[u8]) {
    let mut entry = Vec::with_capacity(key.len() + value.len() + 8);
    encoding::string::encode(1, &key.to_string(), &mut entry);
    length_delimited(&mut entry, 2, value);
    length_delimited(buf, tag, &entry);
}

pub fn length_delimited(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let services = [crate::service::Service {
            hostname: "reviews.default.svc.cluster.local".into(),
            namespace: "default".into(),
            ports: vec![],
            endpoints: vec![],
            resolution: crate::service::Resolution::Static,
            addresses: vec![],
            source: crate::object::ObjectKey::new("Service", Some("default"), "reviews"),
            subject_alt_names: vec![],
        }];
        Cluster {
            name: "outbound|9080||reviews.default.svc.cluster.local".into(),
            metadata: Some(crate::xds::clusters::istio_metadata(services.iter())),
            ..Default::default()
        }
    }

    #[test]
    fn the_same_cluster_packs_to_the_same_bytes_and_decodes_back() {
        // Each build has its own HashMaps, so prost's own encoding would differ.
        let first = pack_cluster(&cluster());
        for _ in 0..20 {
            assert_eq!(pack_cluster(&cluster()), first);
        }
        assert_eq!(Cluster::decode(first.value.as_slice()).unwrap(), cluster());
    }
}
