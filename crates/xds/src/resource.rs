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

/// A hash of a response's resources (type URLs and bytes), independent of their order: two
/// responses with the same resources hash the same whatever their versions and nonces.
pub(crate) fn content_hash(resources: &[Any]) -> u64 {
    let mut sorted: Vec<&Any> = resources.iter().collect();
    sorted.sort_by(|a, b| (&a.type_url, &a.value).cmp(&(&b.type_url, &b.value)));
    let mut hash = Fnv64::new();
    for any in sorted {
        hash.write_prefixed(any.type_url.as_bytes());
        hash.write_prefixed(&any.value);
    }
    hash.finish()
}

/// The first field of every Envoy xDS resource message: its name (`Listener.name`,
/// `RouteConfiguration.name`, `Cluster.name`, `ClusterLoadAssignment.cluster_name`,
/// `Secret.name` all have tag 1). Decoding only it skips every other field.
#[derive(Clone, PartialEq, prost::Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

/// The name of a packed xDS resource, without decoding the rest of it; `None` when the
/// bytes do not decode.
pub(crate) fn name_of(any: &Any) -> Option<String> {
    <NameOnly as prost::Message>::decode(any.value.as_slice())
        .ok()
        .map(|n| n.name)
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
    fn content_hash_ignores_order_and_sees_bytes() {
        let a = cluster("a").body;
        let b = cluster("b").body;
        assert_eq!(
            content_hash(&[a.clone(), b.clone()]),
            content_hash(&[b.clone(), a.clone()])
        );
        let one = content_hash(std::slice::from_ref(&a));
        assert_ne!(one, content_hash(std::slice::from_ref(&b)));
        assert_ne!(one, content_hash(&[a.clone(), a.clone()]));
        let relabelled = Any {
            type_url: crate::type_url::ROUTE.into(),
            value: a.value.clone(),
        };
        assert_ne!(content_hash(&[a]), content_hash(&[relabelled]));
    }

    #[test]
    fn name_of_reads_every_resource_types_name() {
        use envoy_types::pb::envoy::config::{endpoint, listener, route};
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
        let named = [
            Resource::new(
                "l",
                &listener::v3::Listener {
                    name: "l".into(),
                    stat_prefix: "not the name".into(),
                    ..Default::default()
                },
            ),
            Resource::new(
                "r",
                &route::v3::RouteConfiguration {
                    name: "r".into(),
                    ..Default::default()
                },
            ),
            cluster("c"),
            Resource::new(
                "e",
                &endpoint::v3::ClusterLoadAssignment {
                    cluster_name: "e".into(),
                    ..Default::default()
                },
            ),
            Resource::new(
                "s",
                &Secret {
                    name: "s".into(),
                    ..Default::default()
                },
            ),
        ];
        for resource in named {
            assert_eq!(
                name_of(&resource.body).as_deref(),
                Some(resource.name.as_str())
            );
        }
        let garbage = Any {
            type_url: crate::type_url::ROUTE.into(),
            value: vec![0x0a, 0xff],
        };
        assert_eq!(name_of(&garbage), None);
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
