//! The connected proxy as the generator sees it: parsed from the Envoy `Node`
//! (Istio-format id, Weft metadata keys, and Istio's `INTERCEPTION_MODE`).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use weft_xds::contract::{INTERCEPTION_MODE, INTERCEPTION_REDIRECT};

use crate::locality::Locality;

/// Default port of the outbound listener (`virtualOutbound`).
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;
/// Default port of the inbound listener (`virtualInbound`).
pub const DEFAULT_INBOUND_PORT: u16 = 15006;

/// Why a node was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("node.id is empty; expected sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>")]
    EmptyId,
    #[error(
        "node.id {id:?} is not in Istio format sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>"
    )]
    BadId { id: String },
    #[error("node metadata {key} = {value:?} is not a valid port number")]
    BadPort { key: &'static str, value: String },
    #[error("the client certificate's identity {uri:?} is not a workload SPIFFE ID: {reason}")]
    BadIdentity { uri: String, reason: String },
    #[error(
        "the node claims {claim} {claimed:?} but its client certificate proves {uri}; a proxy gets only the config of the identity it proves"
    )]
    IdentityMismatch {
        claim: &'static str,
        claimed: String,
        uri: String,
    },
}

/// What the generator knows about one connected proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The full `node.id`.
    pub id: String,
    /// `sidecar` or `router`.
    pub kind: String,
    /// Workload (pod) name, from `WORKLOAD_NAME` or the id.
    pub workload_name: String,
    /// Namespace, from `NAMESPACE`, else the id.
    pub namespace: String,
    /// Workload labels (`LABELS`), used for `sourceLabels` matches.
    pub labels: BTreeMap<String, String>,
    /// `INSTANCE_IPS`, else the id's IP.
    pub instance_ips: Vec<String>,
    pub outbound_port: u16,
    pub inbound_port: u16,
    /// The application port behind the inbound listener; no inbound listener when `None`.
    pub app_port: Option<u16>,
    /// The workload's ServiceAccount: `SERVICE_ACCOUNT` (Istio's node metadata key), or the
    /// identity the client certificate proved.
    pub service_account: Option<String>,
    /// The SPIFFE ID the connection's client certificate proved (ADS over TLS on 15012);
    /// `None` on the plaintext port.
    pub identity: Option<String>,
    /// The pod's traffic is captured by iptables (`INTERCEPTION_MODE` = `REDIRECT`): the
    /// generator sends the capture shape ([`super::capture`]); otherwise the explicit one.
    pub capture: bool,
    /// `node.locality`, as the proxy says (`--locality`); empty when it does not say (the
    /// model then knows it from the proxy's pod: [`crate::model::Model::proxy_locality`]).
    pub locality: Locality,
}

impl Proxy {
    /// Parses a node: `sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>` plus
    /// the metadata keys of the xDS contract.
    pub fn from_node(node: &Node) -> Result<Self, ProxyError> {
        if node.id.trim().is_empty() {
            return Err(ProxyError::EmptyId);
        }
        let parts: Vec<&str> = node.id.split('~').collect();
        let [kind, ip, pod, dns_domain] = parts.as_slice() else {
            return Err(ProxyError::BadId {
                id: node.id.clone(),
            });
        };
        if kind.is_empty() {
            return Err(ProxyError::BadId {
                id: node.id.clone(),
            });
        }
        let (pod_name, pod_namespace) = match pod.split_once('.') {
            Some((name, namespace)) => (name.to_string(), namespace.to_string()),
            None => (pod.to_string(), String::new()),
        };
        let domain_namespace = dns_domain.split('.').next().unwrap_or_default().to_string();

        let empty = Struct::default();
        let metadata = node.metadata.as_ref().unwrap_or(&empty);
        let namespace = string(metadata, "NAMESPACE")
            .or(Some(pod_namespace).filter(|ns| !ns.is_empty()))
            .or(Some(domain_namespace).filter(|ns| !ns.is_empty()))
            .unwrap_or_else(|| "default".to_string());
        let workload_name = string(metadata, "WORKLOAD_NAME").unwrap_or(pod_name);
        let labels = match metadata
            .fields
            .get("LABELS")
            .and_then(|value| value.kind.as_ref())
        {
            Some(Kind::StructValue(labels)) => labels
                .fields
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), scalar(value)?)))
                .collect(),
            _ => BTreeMap::new(),
        };
        let mut instance_ips: Vec<String> = string(metadata, "INSTANCE_IPS")
            .map(|ips| {
                ips.split(',')
                    .map(str::trim)
                    .filter(|ip| !ip.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if instance_ips.is_empty() && !ip.is_empty() {
            instance_ips.push(ip.to_string());
        }
        let interception = string(metadata, INTERCEPTION_MODE);
        if let Some(mode) = interception
            .as_deref()
            .filter(|mode| *mode != INTERCEPTION_REDIRECT && *mode != "NONE")
        {
            tracing::warn!(
                proxy = %node.id,
                mode,
                "node metadata {INTERCEPTION_MODE} {mode:?} is not supported (only {INTERCEPTION_REDIRECT} and NONE); the proxy gets the explicit listeners"
            );
        }
        Ok(Self {
            id: node.id.clone(),
            kind: kind.to_string(),
            workload_name,
            namespace,
            labels,
            instance_ips,
            outbound_port: port(metadata, "WEFT_OUTBOUND_PORT")?.unwrap_or(DEFAULT_OUTBOUND_PORT),
            inbound_port: port(metadata, "WEFT_INBOUND_PORT")?.unwrap_or(DEFAULT_INBOUND_PORT),
            app_port: port(metadata, "WEFT_APP_PORT")?,
            service_account: string(metadata, "SERVICE_ACCOUNT"),
            identity: None,
            capture: interception.as_deref() == Some(INTERCEPTION_REDIRECT),
            locality: node
                .locality
                .as_ref()
                .map(|l| Locality {
                    region: l.region.clone(),
                    zone: l.zone.clone(),
                    subzone: l.sub_zone.clone(),
                })
                .unwrap_or_default(),
        })
    }

    /// Binds the proxy to the identity its client certificate proved: the certificate's
    /// trust domain must be the mesh's, and what the node claims (namespace, service
    /// account) must be what the certificate says. Whatever the metadata claims, the proxy
    /// then gets the config of its proven namespace only.
    pub fn authenticate(&mut self, peer_uri: &str, trust_domain: &str) -> Result<(), ProxyError> {
        let id: weft_identity::SpiffeId =
            peer_uri
                .parse()
                .map_err(
                    |err: weft_identity::SpiffeIdError| ProxyError::BadIdentity {
                        uri: peer_uri.to_string(),
                        reason: err.to_string(),
                    },
                )?;
        let mismatch = |claim, claimed: &str| ProxyError::IdentityMismatch {
            claim,
            claimed: claimed.to_string(),
            uri: peer_uri.to_string(),
        };
        if id.trust_domain != trust_domain {
            return Err(mismatch("trust domain", trust_domain));
        }
        if id.namespace != self.namespace {
            return Err(mismatch("namespace", &self.namespace));
        }
        if let Some(claimed) = &self.service_account
            && *claimed != id.service_account
        {
            return Err(mismatch("service account", claimed));
        }
        self.service_account = Some(id.service_account);
        self.identity = Some(peer_uri.to_string());
        Ok(())
    }

    /// A sidecar in `namespace` with default ports, for tests and tools.
    pub fn sidecar(namespace: &str) -> Self {
        Self {
            id: format!("sidecar~10.0.0.1~app.{namespace}~{namespace}.svc.cluster.local"),
            kind: "sidecar".to_string(),
            workload_name: "app".to_string(),
            namespace: namespace.to_string(),
            labels: BTreeMap::new(),
            instance_ips: Vec::new(),
            outbound_port: DEFAULT_OUTBOUND_PORT,
            inbound_port: DEFAULT_INBOUND_PORT,
            app_port: None,
            service_account: None,
            identity: None,
            capture: false,
            locality: Locality::default(),
        }
    }

    /// The IP listeners bind to: the first instance IP, else `0.0.0.0`.
    pub fn listen_ip(&self) -> &str {
        self.instance_ips.first().map_or("0.0.0.0", String::as_str)
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value.kind.as_ref()? {
        Kind::StringValue(text) => Some(text.clone()),
        Kind::NumberValue(number) => Some(number.to_string()),
        Kind::BoolValue(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn string(metadata: &Struct, key: &str) -> Option<String> {
    metadata
        .fields
        .get(key)
        .and_then(scalar)
        .filter(|text| !text.trim().is_empty())
}

fn port(metadata: &Struct, key: &'static str) -> Result<Option<u16>, ProxyError> {
    let Some(text) = string(metadata, key) else {
        return Ok(None);
    };
    match text.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(Some(port)),
        _ => Err(ProxyError::BadPort { key, value: text }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(value.to_string())),
        }
    }

    fn node(id: &str, fields: &[(&str, Value)]) -> Node {
        Node {
            id: id.to_string(),
            metadata: Some(Struct {
                fields: fields
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.clone()))
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn parses_istio_id_and_metadata() {
        let labels = Value {
            kind: Some(Kind::StructValue(Struct {
                fields: [
                    ("app".to_string(), text("reviews")),
                    ("version".to_string(), text("v2")),
                ]
                .into_iter()
                .collect(),
            })),
        };
        let proxy = Proxy::from_node(&node(
            "sidecar~10.1.2.3~reviews-v2-abc.bookinfo~bookinfo.svc.cluster.local",
            &[
                ("LABELS", labels),
                ("INSTANCE_IPS", text("127.0.0.1, 10.1.2.3")),
                ("WEFT_OUTBOUND_PORT", text("16001")),
                (
                    "WEFT_APP_PORT",
                    Value {
                        kind: Some(Kind::NumberValue(9080.0)),
                    },
                ),
            ],
        ))
        .expect("valid node");
        assert_eq!(proxy.kind, "sidecar");
        assert_eq!(proxy.namespace, "bookinfo");
        assert_eq!(proxy.workload_name, "reviews-v2-abc");
        assert_eq!(proxy.labels.get("version").map(String::as_str), Some("v2"));
        assert_eq!(proxy.instance_ips, ["127.0.0.1", "10.1.2.3"]);
        assert_eq!(proxy.listen_ip(), "127.0.0.1");
        assert_eq!(proxy.outbound_port, 16001);
        assert_eq!(proxy.inbound_port, DEFAULT_INBOUND_PORT);
        assert_eq!(proxy.app_port, Some(9080));
    }

    #[test]
    fn metadata_namespace_wins_and_ip_comes_from_id() {
        let proxy = Proxy::from_node(&node(
            "sidecar~10.0.0.9~pod.a~a.svc.cluster.local",
            &[("NAMESPACE", text("b")), ("WORKLOAD_NAME", text("ratings"))],
        ))
        .expect("valid node");
        assert_eq!(proxy.namespace, "b");
        assert_eq!(proxy.workload_name, "ratings");
        assert_eq!(proxy.instance_ips, ["10.0.0.9"]);
        assert_eq!(proxy.app_port, None);
    }

    #[test]
    fn interception_mode_redirect_selects_the_capture_shape() {
        let id = "sidecar~10.0.0.9~pod.a~a.svc.cluster.local";
        for (mode, capture) in [
            (Some("REDIRECT"), true),
            (Some("NONE"), false),
            (Some("TPROXY"), false),
            (Some("redirect"), false),
            (None, false),
        ] {
            let fields: Vec<(&str, Value)> = mode
                .map(|mode| (INTERCEPTION_MODE, text(mode)))
                .into_iter()
                .collect();
            let proxy = Proxy::from_node(&node(id, &fields)).expect("valid node");
            assert_eq!(proxy.capture, capture, "{mode:?}");
        }
        assert!(!Proxy::sidecar("a").capture);
    }

    #[test]
    fn rejects_bad_nodes() {
        assert_eq!(Proxy::from_node(&node("", &[])), Err(ProxyError::EmptyId));
        assert!(matches!(
            Proxy::from_node(&node("just-a-name", &[])),
            Err(ProxyError::BadId { .. })
        ));
        assert!(matches!(
            Proxy::from_node(&node(
                "sidecar~1.2.3.4~p.ns~ns.svc.cluster.local",
                &[("WEFT_APP_PORT", text("http"))]
            )),
            Err(ProxyError::BadPort {
                key: "WEFT_APP_PORT",
                ..
            })
        ));
    }
}
