//! Mutual TLS across the contract: PeerAuthentications in the three modes (the inbound
//! listener's chains), endpoints marked `tlsMode: istio`, auto mTLS and every DestinationRule
//! TLS mode on the clusters. What the controller generates for them must be what the proxy
//! converts and its store applies.

use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use prost::Message;
use weft_controller::model::security::MtlsMode;

use super::check::{
    APP_PORT, ConfigCase, Generated, ProxySpec, Report, check_case, controller_proxy, finish,
    free_ports,
};
use super::fixtures::config_from;

/// Mesh-wide PERMISSIVE, `strict` STRICT, `plain` DISABLE, and in `ports` a workload policy
/// for the contract's server sidecars (`app: contract`) that is STRICT but DISABLE on the app
/// port; services with and without sidecars, and a DestinationRule per TLS mode.
pub const MTLS: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: strict}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: plain}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: contract, namespace: ports}
spec:
  selector: {matchLabels: {app: contract}}
  mtls: {mode: STRICT}
  portLevelMtls: {9080: {mode: DISABLE}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: strict}
spec:
  hosts: [reviews]
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9443, name: grpc, protocol: GRPC}
  resolution: STATIC
  subjectAltNames: [reviews.strict.example.com]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: strict}
spec:
  address: 127.0.0.11
  labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}
  serviceAccount: reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: strict}
spec:
  address: 127.0.0.12
  labels: {app: reviews, version: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: strict}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {tls: {mode: DISABLE}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: plain}
spec:
  hosts: [legacy]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.21, labels: {security.istio.io/tlsMode: istio}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [simple.example.com, system.example.com, insecure.example.com, mutual.example.com, mesh.example.com]
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  - {number: 8443, name: grpc, protocol: GRPC}
  resolution: STATIC
  endpoints: [{address: 127.0.0.31}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: simple, namespace: default}
spec:
  host: simple.example.com
  trafficPolicy:
    tls:
      mode: SIMPLE
      sni: simple.example.com
      caCertificates: /etc/weft/contract/ca.pem
      subjectAltNames: [simple.example.com, "spiffe://example.org/ns/web/sa/frontend"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: system, namespace: default}
spec:
  host: system.example.com
  trafficPolicy: {tls: {mode: SIMPLE}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: insecure, namespace: default}
spec:
  host: insecure.example.com
  trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mutual, namespace: default}
spec:
  host: mutual.example.com
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: /etc/weft/contract/cert.pem
      privateKey: /etc/weft/contract/key.pem
      caCertificates: /etc/weft/contract/ca.pem
      sni: mutual.example.com
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh, namespace: default}
spec:
  host: mesh.example.com
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, sni: mesh.example.com, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/mesh"]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns, namespace: default}
spec:
  hosts: [dns.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints:
  - {address: localhost, labels: {security.istio.io/tlsMode: istio}, serviceAccount: dns}
"#;

/// What the generated resources hold, summed over the proxies.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    strict_listeners: usize,
    permissive_listeners: usize,
    disable_listeners: usize,
    auto_mtls_clusters: usize,
    tls_socket_clusters: usize,
    plaintext_clusters: usize,
    marked_endpoints: usize,
}

fn seen(generated: &Generated, seen: &mut Seen) {
    for resource in &generated.listeners {
        let listener = lds::Listener::decode(resource.body.value.as_slice()).expect("decodes");
        if listener.name != "virtualInbound" {
            continue;
        }
        let protocols: Vec<&str> = listener
            .filter_chains
            .iter()
            .map(|chain| {
                chain
                    .filter_chain_match
                    .as_ref()
                    .map_or("*", |m| m.transport_protocol.as_str())
            })
            .collect();
        match protocols.as_slice() {
            ["tls"] => seen.strict_listeners += 1,
            ["tls", "raw_buffer"] => seen.permissive_listeners += 1,
            ["*"] => seen.disable_listeners += 1,
            other => panic!("unexpected inbound chains {other:?}"),
        }
    }
    for resource in &generated.clusters {
        let cluster = cds::Cluster::decode(resource.body.value.as_slice()).expect("decodes");
        if !cluster.name.starts_with("outbound|") {
            continue;
        }
        match (
            &cluster.transport_socket,
            cluster.transport_socket_matches.len(),
        ) {
            (None, 2) => seen.auto_mtls_clusters += 1,
            (Some(_), 0) => seen.tls_socket_clusters += 1,
            (None, 0) => seen.plaintext_clusters += 1,
            other => panic!("{}: unexpected transport {other:?}", cluster.name),
        }
        if let Some(assignment) = &cluster.load_assignment {
            seen.marked_endpoints += marked(assignment);
        }
    }
    for resource in &generated.endpoints {
        let assignment =
            eds::ClusterLoadAssignment::decode(resource.body.value.as_slice()).expect("decodes");
        seen.marked_endpoints += marked(&assignment);
    }
}

fn marked(assignment: &eds::ClusterLoadAssignment) -> usize {
    assignment
        .endpoints
        .iter()
        .flat_map(|locality| &locality.lb_endpoints)
        .filter(|lb| {
            lb.metadata.as_ref().is_some_and(|m| {
                m.filter_metadata
                    .contains_key("envoy.transport_socket_match")
            })
        })
        .count()
}

#[tokio::test]
async fn mtls_translations_are_accepted_by_the_proxy() {
    let set = config_from(&[("mtls.yaml", MTLS)]);
    assert!(set.errors.is_empty(), "mtls.yaml: {:#?}", set.errors);
    let case = ConfigCase::local("mtls.yaml", set);
    let model = case.model();
    let contract = [("app".to_string(), "contract".to_string())].into();
    for (namespace, mode) in [
        ("istio-system", MtlsMode::Permissive),
        ("default", MtlsMode::Permissive),
        ("strict", MtlsMode::Strict),
        ("plain", MtlsMode::Disable),
        ("ports", MtlsMode::Disable),
    ] {
        assert_eq!(
            model
                .mtls_mode_for(namespace, &contract, Some(u32::from(APP_PORT)))
                .mode,
            mode,
            "{namespace}"
        );
    }

    // The generated resources carry every form (server sidecars of each namespace).
    let mut found = Seen::default();
    for namespace in ["istio-system", "default", "strict", "plain", "ports"] {
        let spec = ProxySpec {
            label: format!("server in {namespace}"),
            namespace: namespace.to_string(),
            labels: vec![("app".to_string(), "contract".to_string())],
            app_port: Some(APP_PORT),
            capture: None,
        };
        let (outbound, inbound) = free_ports();
        let generated = Generated::new(&model, &controller_proxy(&spec, outbound, inbound));
        seen(&generated, &mut found);
    }
    // Per proxy: auto mTLS on reviews' two ports and dns; a TLS socket on reviews v1 (ISTIO_MUTUAL,
    // two ports) and on the five hosts with a SIMPLE, MUTUAL or ISTIO_MUTUAL rule (two ports
    // each); plaintext on reviews v2 (DISABLE, two ports) and on legacy (its namespace is
    // DISABLE). Marked endpoints: reviews-v1 in four EDS clusters, legacy, dns's one endpoint.
    assert_eq!(
        found,
        Seen {
            strict_listeners: 1,
            permissive_listeners: 2,
            disable_listeners: 2,
            auto_mtls_clusters: 5 * 3,
            tls_socket_clusters: 5 * 12,
            plaintext_clusters: 5 * 3,
            marked_endpoints: 5 * 6,
        }
    );

    let mut report = Report::default();
    check_case(&case, &mut report).await;
    finish(&[("mutual TLS (mtls.yaml)".to_string(), report)]);
}
