//! Istio's name table (NDS, `istio.networking.nds.v1.NameTable`): the host names a sidecar's
//! DNS proxy answers itself, pushed over ADS as one wildcard resource.
//!
//! Written out here with prost's derive because no published crate carries Istio's
//! `pkg/dns/proto/nds.proto`; field names, tags and the package are Istio's, so an Istio
//! agent could read what the controller sends and the proxy could read istiod's.

use std::collections::BTreeMap;

/// Host name → what the DNS proxy answers for it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameTable {
    /// Keyed by fully qualified host name (`reviews.default.svc.cluster.local`, or a
    /// wildcard such as `*.example.com`). A `BTreeMap`, so the encoding, and with it the
    /// resource's version, is the same for the same table.
    #[prost(btree_map = "string, message", tag = "1")]
    pub table: BTreeMap<String, NameInfo>,
}

/// One host of the [`NameTable`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameInfo {
    /// The addresses answered for the host (IPv4 and IPv6, as text).
    #[prost(string, repeated, tag = "1")]
    pub ips: Vec<String>,
    /// The registry the host comes from: `Kubernetes` or `External` (a ServiceEntry).
    #[prost(string, tag = "2")]
    pub registry: String,
    /// The Kubernetes Service's name (Kubernetes hosts only).
    #[prost(string, tag = "3")]
    pub shortname: String,
    /// The Kubernetes Service's namespace (Kubernetes hosts only).
    #[prost(string, tag = "4")]
    pub namespace: String,
    /// Other names of the host valid from the proxy's namespace: `reviews`, `reviews.default`,
    /// `reviews.default.svc` for a Service in the proxy's own namespace.
    #[prost(string, repeated, tag = "5")]
    pub alt_hosts: Vec<String>,
}

impl prost::Name for NameTable {
    const NAME: &'static str = "NameTable";
    const PACKAGE: &'static str = "istio.networking.nds.v1";

    fn full_name() -> String {
        format!("{}.{}", Self::PACKAGE, Self::NAME)
    }

    fn type_url() -> String {
        format!("type.googleapis.com/{}", Self::full_name())
    }
}

/// The name [`NameTable`] resources are sent under (Istio sends one unnamed table).
pub const NAME_TABLE_RESOURCE: &str = "";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::{Message, Name};

    #[test]
    fn type_url_is_istios() {
        assert_eq!(NameTable::type_url(), crate::contract::NAME_TABLE);
    }

    #[test]
    fn encoding_is_stable_and_round_trips() {
        let table = |order: &[&str]| NameTable {
            table: order
                .iter()
                .map(|h| {
                    (
                        (*h).to_string(),
                        NameInfo {
                            ips: vec!["10.0.0.1".into()],
                            registry: "Kubernetes".into(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        };
        let a = table(&["b.ns.svc.cluster.local", "a.ns.svc.cluster.local"]);
        let b = table(&["a.ns.svc.cluster.local", "b.ns.svc.cluster.local"]);
        assert_eq!(a.encode_to_vec(), b.encode_to_vec());
        assert_eq!(NameTable::decode(a.encode_to_vec().as_slice()).unwrap(), a);
    }
}
