//! Packs the filter configs that hold protobuf maps (`RBAC.policies` of the HTTP and network
//! RBAC filters, `JwtAuthentication.providers`)
//! so that the same config always gives the same bytes: prost encodes a map from a `HashMap`,
//! in an order that differs between instances, which would change the listener's version on
//! every model rebuild. The map entries are written here in key order; the bytes decode to the
//! same message.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::rbac::v3::{Policy, Rbac as RbacRules};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwtAuthentication, JwtProvider,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost::encoding::{self, WireType};

/// `config.rbac.v3.RBAC.policies`.
const RBAC_POLICIES_TAG: u32 = 2;
/// `filters.http.rbac.v3.RBAC.rules`.
const HTTP_RBAC_RULES_TAG: u32 = 1;
/// `JwtAuthentication.providers`.
const JWT_PROVIDERS_TAG: u32 = 1;

/// The HTTP RBAC filter config with `rules` (whose `policies` must be empty) and `policies`.
pub fn http_rbac(rules: &RbacRules, policies: &BTreeMap<String, Policy>) -> Any {
    let mut rules_bytes = rules.encode_to_vec();
    append_map(&mut rules_bytes, RBAC_POLICIES_TAG, policies);
    let mut value = Vec::with_capacity(rules_bytes.len() + 8);
    encoding::encode_key(HTTP_RBAC_RULES_TAG, WireType::LengthDelimited, &mut value);
    encoding::encode_varint(rules_bytes.len() as u64, &mut value);
    value.extend_from_slice(&rules_bytes);
    Any {
        type_url: <Rbac as prost::Name>::type_url(),
        value,
    }
}

/// `filters.network.rbac.v3.RBAC.rules` and `.stat_prefix`.
const NETWORK_RBAC_RULES_TAG: u32 = 1;
const NETWORK_RBAC_STAT_PREFIX_TAG: u32 = 3;

/// The network RBAC filter config with `rules` (whose `policies` must be empty), `policies` and
/// `stat_prefix` (which Envoy requires).
pub fn network_rbac(
    rules: &RbacRules,
    policies: &BTreeMap<String, Policy>,
    stat_prefix: &str,
) -> Any {
    let mut rules_bytes = rules.encode_to_vec();
    append_map(&mut rules_bytes, RBAC_POLICIES_TAG, policies);
    let mut value = Vec::with_capacity(rules_bytes.len() + stat_prefix.len() + 8);
    encoding::encode_key(
        NETWORK_RBAC_RULES_TAG,
        WireType::LengthDelimited,
        &mut value,
    );
    encoding::encode_varint(rules_bytes.len() as u64, &mut value);
    value.extend_from_slice(&rules_bytes);
    encoding::string::encode(
        NETWORK_RBAC_STAT_PREFIX_TAG,
        &stat_prefix.to_string(),
        &mut value,
    );
    Any {
        type_url: <NetworkRbac as prost::Name>::type_url(),
        value,
    }
}

/// The JWT filter config with `config` (whose `providers` must be empty) and `providers`.
pub fn jwt_authentication(
    config: &JwtAuthentication,
    providers: &BTreeMap<String, JwtProvider>,
) -> Any {
    let mut value = config.encode_to_vec();
    append_map(&mut value, JWT_PROVIDERS_TAG, providers);
    Any {
        type_url: <JwtAuthentication as prost::Name>::type_url(),
        value,
    }
}

/// Appends `entries` as the map field `tag` (string keys, message values), in key order.
fn append_map<V: Message>(buf: &mut Vec<u8>, tag: u32, entries: &BTreeMap<String, V>) {
    for (key, value) in entries {
        let len = encoding::string::encoded_len(1, key) + encoding::message::encoded_len(2, value);
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(len as u64, buf);
        encoding::string::encode(1, key, buf);
        encoding::message::encode(2, value, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::rbac::v3::{Permission, Principal, permission, principal};

    fn policy(port: u32) -> Policy {
        Policy {
            permissions: vec![Permission {
                rule: Some(permission::Rule::DestinationPort(port)),
            }],
            principals: vec![Principal {
                identifier: Some(principal::Identifier::Any(true)),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn maps_encode_in_key_order_and_decode_to_the_same_message() {
        let rules = RbacRules {
            action: 1,
            ..Default::default()
        };
        let mut policies = BTreeMap::new();
        for (i, name) in ["b", "a", "c", "origins-10", "origins-2"]
            .iter()
            .enumerate()
        {
            policies.insert(name.to_string(), policy(8000 + i as u32));
        }
        let packed = http_rbac(&rules, &policies);
        assert_eq!(
            packed.type_url,
            "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
        );
        // Built again (another map instance): the same bytes.
        assert_eq!(http_rbac(&rules, &policies.clone()), packed);
        let decoded = Rbac::decode(packed.value.as_slice()).expect("decodes");
        let expected = Rbac {
            rules: Some(RbacRules {
                action: 1,
                policies: policies.clone().into_iter().collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(decoded, expected);

        let packed = network_rbac(&rules, &policies, "tcp.");
        assert_eq!(network_rbac(&rules, &policies.clone(), "tcp."), packed);
        assert_eq!(
            packed.type_url,
            "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
        );
        assert_eq!(
            NetworkRbac::decode(packed.value.as_slice()).expect("decodes"),
            NetworkRbac {
                rules: expected.rules.clone(),
                stat_prefix: "tcp.".to_string(),
                ..Default::default()
            }
        );

        let providers: BTreeMap<String, JwtProvider> = ["origins-1", "origins-0"]
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    JwtProvider {
                        issuer: format!("issuer of {name}"),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let config = JwtAuthentication {
            bypass_cors_preflight: true,
            ..Default::default()
        };
        let packed = jwt_authentication(&config, &providers);
        assert_eq!(jwt_authentication(&config, &providers.clone()), packed);
        let decoded = JwtAuthentication::decode(packed.value.as_slice()).expect("decodes");
        assert_eq!(
            decoded,
            JwtAuthentication {
                providers: providers.into_iter().collect(),
                bypass_cors_preflight: true,
                ..Default::default()
            }
        );
    }
}
