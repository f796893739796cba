//! Named resources ready to send, and the content hash used as their `version_info`.

use envoy_types::pb::google::protobuf::Any;

/// A named resource ready to send: the name the client subscribes to (listener,
/// route configuration, cluster or cluster load assignment name) and the packed message.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The resource name, as clients ask for it in `resource_names`.
    pub name: String,
    /// The packed message.
    pub body: Any,
}

impl Resource {
    /// Packs `message` with its own type URL (`type.googleapis.com/<full name>`).
    pub fn new<M: prost::Name>(name: impl Into<String>, message: &M) -> Self {
        Self {
            name: name.into(),
            body: Any {
                type_url: M::type_url(),
                value: message.encode_to_vec(),
            },
        }
    }

    /// A resource from an already packed message.
    pub fn from_any(name: impl Into<String>, body: Any) -> Self {
        Self {
            name: name.into(),
            body,
        }
    }
}

/// The version of a set of resources: 16 hex digits of a 64-bit FNV-1a hash over the
/// resources sorted by name (name, type URL and encoded bytes, each length-prefixed).
///
/// It depends only on content, so the same set gets the same version in every process
/// and across reconnects; the order of `resources` does not matter.
///
/// Caveat: prost encodes protobuf `map` fields (e.g. `Struct.fields`) from a `HashMap`,
/// whose order differs between instances, so a message with a multi-entry map may encode
/// differently each time it is built. That only costs a redundant push, never a missed one.
pub fn version_of(resources: &[Resource]) -> String {
    let mut sorted: Vec<&Resource> = resources.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hash = Fnv64::new();
    for resource in sorted {
        hash.write_prefixed(resource.name.as_bytes());
        hash.write_prefixed(resource.body.type_url.as_bytes());
        hash.write_prefixed(&resource.body.value);
    }
    format!("{:016x}", hash.finish())
}

/// 64-bit FNV-1a: tiny, and stable across processes and Rust versions (unlike std's
/// `DefaultHasher`, whose algorithm is unspecified).
struct Fnv64(u64);

impl Fnv64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn write_prefixed(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    fn cluster(name: &str) -> Resource {
        Resource::new(
            name,
            &Cluster {
                name: name.to_string(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn packs_with_type_url() {
        let r = cluster("a");
        assert_eq!(r.name, "a");
        assert_eq!(r.body.type_url, crate::type_url::CLUSTER);
        let decoded: Cluster = prost::Message::decode(r.body.value.as_slice()).unwrap();
        assert_eq!(decoded.name, "a");
    }

    #[test]
    fn version_is_stable_and_order_independent() {
        let v1 = version_of(&[cluster("a"), cluster("b")]);
        let v2 = version_of(&[cluster("b"), cluster("a")]);
        assert_eq!(v1, v2);
        assert_eq!(v1.len(), 16);
        assert_ne!(v1, version_of(&[cluster("a")]));
        assert_ne!(v1, version_of(&[cluster("a"), cluster("c")]));
        // The empty set has a fixed version too.
        assert_eq!(version_of(&[]), version_of(&[]));
        assert_ne!(version_of(&[]), version_of(&[cluster("a")]));
    }

    #[test]
    fn version_separates_name_from_body() {
        let a = Resource::from_any(
            "ab",
            Any {
                type_url: "t".into(),
                value: vec![1],
            },
        );
        let b = Resource::from_any(
            "a",
            Any {
                type_url: "bt".into(),
                value: vec![1],
            },
        );
        assert_ne!(version_of(&[a]), version_of(&[b]));
    }
}
