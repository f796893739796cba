//! Outbound cluster TLS: auto mTLS, every DestinationRule TLS mode, Istio's merge of the
//! rule, port-level and subset settings, SANs and SNI; the endpoints' `tlsMode` metadata.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{DataSource, TransportSocket, transport_socket};
use envoy_types::pb::envoy::config::endpoint::v3::LbEndpoint;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, SdsSecretConfig, TlsCertificate, UpstreamTlsContext,
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
    tls_parameters::TlsProtocol,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::google::protobuf::value::Kind;
use prost::Message;

use super::*;
use crate::testing::model_from_yaml;
use crate::xds::clusters::clusters;
use crate::xds::endpoints::load_assignments;
use crate::xds::{Proxy, ads_config_source};

/// Services with and without sidecars, and one service per DestinationRule TLS mode.
const TLS_SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9443, name: grpc, protocol: GRPC}
  resolution: STATIC
  subjectAltNames: ["spiffe://cluster.local/ns/default/sa/legacy", reviews.example.com]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec:
  address: 127.0.0.11
  labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}
  serviceAccount: reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec:
  address: 127.0.0.12
  labels: {app: reviews, version: v2}
  serviceAccount: reviews-v2
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v3, namespace: default}
spec:
  address: 127.0.0.13
  labels: {app: reviews, version: v3, security.istio.io/tlsMode: disabled}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {tls: {mode: DISABLE}}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 9443}
        tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: modes, namespace: default}
spec:
  hosts: [plain.example.com, mesh.example.com, simple.example.com, system.example.com, insecure.example.com, mutual.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 8443, name: grpc, protocol: GRPC}
  resolution: STATIC
  endpoints: [{address: 127.0.0.21, labels: {security.istio.io/tlsMode: istio}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: plain, namespace: default}
spec:
  host: plain.example.com
  trafficPolicy: {tls: {mode: DISABLE}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh, namespace: default}
spec:
  host: mesh.example.com
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, sni: mesh.internal, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/mesh"]}
    portLevelSettings:
    - port: {number: 8443}
      tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: simple, namespace: default}
spec:
  host: simple.example.com
  trafficPolicy:
    tls:
      mode: SIMPLE
      sni: api.simple.example.com
      caCertificates: /etc/certs/ca.pem
      subjectAltNames: [api.simple.example.com, "spiffe://example.org/ns/x/sa/y"]
    portLevelSettings:
    - port: {number: 8443}
      loadBalancer: {simple: RANDOM}
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
  trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true, sni: insecure.example.com}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mutual, namespace: default}
spec:
  host: mutual.example.com
  trafficPolicy:
    tls: {mode: MUTUAL, clientCertificate: /etc/certs/cert.pem, privateKey: /etc/certs/key.pem, caCertificates: /etc/certs/ca.pem}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns, namespace: default}
spec:
  hosts: [dns.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints:
  - {address: a.dns.example.com, labels: {security.istio.io/tlsMode: istio}, serviceAccount: dns}
  - {address: b.dns.example.com}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: old, namespace: legacy}
spec:
  hosts: [old.legacy.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.31, labels: {security.istio.io/tlsMode: istio}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: legacy}
spec: {mtls: {mode: DISABLE}}
"#;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn all_clusters() -> Vec<Cluster> {
    let model = model_from_yaml(TLS_SERVICES);
    clusters(&model, &Proxy::sidecar("default"))
}

fn find<'a>(all: &'a [Cluster], name: &str) -> &'a Cluster {
    all.iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

/// The `UpstreamTlsContext` of a TLS transport socket.
fn upstream_context(socket: &TransportSocket) -> UpstreamTlsContext {
    assert_eq!(socket.name, "envoy.transport_sockets.tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        panic!("typed config expected");
    };
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    );
    UpstreamTlsContext::decode(any.value.as_slice()).expect("decodes")
}

fn ads_sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ads_config_source()),
    }
}

/// (SAN type, exact value) of a validation context.
fn sans(context: &CertificateValidationContext) -> Vec<(SanType, String)> {
    context
        .match_typed_subject_alt_names
        .iter()
        .map(|m| {
            let Some(MatchPattern::Exact(value)) =
                m.matcher.as_ref().and_then(|m| m.match_pattern.clone())
            else {
                panic!("exact matcher expected: {m:?}");
            };
            (
                SanType::try_from(m.san_type).expect("known SAN type"),
                value,
            )
        })
        .collect()
}

/// Asserts the mesh mTLS context with `sni` and `expected` SANs.
fn assert_istio_mutual(socket: &TransportSocket, sni: &str, expected: &[(SanType, &str)]) {
    let context = upstream_context(socket);
    assert_eq!(context.sni, sni);
    let common = context.common_tls_context.expect("common context");
    assert_eq!(
        common
            .tls_params
            .expect("tls params")
            .tls_minimum_protocol_version,
        TlsProtocol::TlSv13 as i32
    );
    assert_eq!(common.alpn_protocols, ["istio-peer-exchange", "istio"]);
    assert_eq!(
        common.tls_certificate_sds_secret_configs,
        [ads_sds("default")]
    );
    assert!(common.tls_certificates.is_empty());
    let Some(ValidationContextType::CombinedValidationContext(combined)) =
        common.validation_context_type
    else {
        panic!("combined validation context expected");
    };
    assert_eq!(
        combined.validation_context_sds_secret_config,
        Some(ads_sds("ROOTCA"))
    );
    let default = combined
        .default_validation_context
        .expect("default context");
    let want: Vec<(SanType, String)> = expected
        .iter()
        .map(|(kind, value)| (*kind, value.to_string()))
        .collect();
    assert_eq!(sans(&default), want);
    assert!(default.trusted_ca.is_none());
}

const REVIEWS_SANS: [(SanType, &str); 4] = [
    (SanType::Dns, "reviews.example.com"),
    (SanType::Uri, "spiffe://cluster.local/ns/default/sa/legacy"),
    (SanType::Uri, "spiffe://cluster.local/ns/default/sa/reviews"),
    (
        SanType::Uri,
        "spiffe://cluster.local/ns/default/sa/reviews-v2",
    ),
];

#[test]
fn auto_mtls_without_tls_settings() {
    let all = all_clusters();
    for (name, sni) in [
        (
            format!("outbound|9080||{REVIEWS}"),
            format!("outbound_.9080_._.{REVIEWS}"),
        ),
        (
            format!("outbound|9080|v1|{REVIEWS}"),
            format!("outbound_.9080_.v1_.{REVIEWS}"),
        ),
        (
            format!("outbound|9443||{REVIEWS}"),
            format!("outbound_.9443_._.{REVIEWS}"),
        ),
    ] {
        let cluster = find(&all, &name);
        assert!(cluster.transport_socket.is_none(), "{name}");
        let [istio, disabled] = cluster.transport_socket_matches.as_slice() else {
            panic!(
                "{name}: two matches expected: {:?}",
                cluster.transport_socket_matches
            );
        };
        assert_eq!(istio.name, "tlsMode-istio");
        let wanted = istio.r#match.as_ref().expect("match");
        assert_eq!(wanted.fields.len(), 1);
        assert_eq!(
            wanted.fields["tlsMode"].kind,
            Some(Kind::StringValue("istio".to_string()))
        );
        assert_istio_mutual(
            istio.transport_socket.as_ref().expect("socket"),
            &sni,
            &REVIEWS_SANS,
        );
        assert_eq!(disabled.name, "tlsMode-disabled");
        assert_eq!(disabled.r#match, Some(Default::default()));
        let plain = disabled.transport_socket.as_ref().expect("socket");
        assert_eq!(plain.name, "envoy.transport_sockets.raw_buffer");
        let Some(transport_socket::ConfigType::TypedConfig(any)) = &plain.config_type else {
            panic!("typed config expected");
        };
        assert_eq!(
            any.type_url,
            "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
        );
    }
    // DNS clusters too, with the identities their endpoints name.
    let dns = find(&all, "outbound|80||dns.example.com");
    assert_eq!(dns.transport_socket_matches.len(), 2);
    assert_istio_mutual(
        dns.transport_socket_matches[0]
            .transport_socket
            .as_ref()
            .expect("socket"),
        "outbound_.80_._.dns.example.com",
        &[(SanType::Uri, "spiffe://cluster.local/ns/default/sa/dns")],
    );
    // The inbound cluster (to the app) stays plaintext.
    let mut proxy = Proxy::sidecar("default");
    proxy.app_port = Some(9080);
    let model = model_from_yaml(TLS_SERVICES);
    let inbound = crate::xds::clusters::inbound_cluster(&proxy, 9080);
    assert!(inbound.transport_socket.is_none() && inbound.transport_socket_matches.is_empty());
    assert!(
        clusters(&model, &proxy)
            .iter()
            .any(|c| c.name == "inbound|9080||")
    );
}

#[test]
fn sans_follow_the_trust_domain() {
    let settings = crate::model::MeshSettings {
        trust_domain: "example.org".to_string(),
        ..Default::default()
    };
    let model =
        crate::model::Model::build(&crate::testing::config_from_yaml(TLS_SERVICES), &settings);
    let service = &model.services[REVIEWS];
    assert_eq!(
        service_sans(service),
        [
            "reviews.example.com",
            "spiffe://cluster.local/ns/default/sa/legacy",
            "spiffe://example.org/ns/default/sa/reviews",
            "spiffe://example.org/ns/default/sa/reviews-v2",
        ]
    );
    // No known identity: an empty list (any identity of the trust bundle).
    assert!(service_sans(&model.services["plain.example.com"]).is_empty());
}

#[test]
fn namespace_disable_turns_auto_mtls_off() {
    let all = all_clusters();
    let old = find(&all, "outbound|80||old.legacy.svc.cluster.local");
    assert!(old.transport_socket.is_none());
    assert!(old.transport_socket_matches.is_empty());
}

#[test]
fn destination_rule_disable_is_plaintext() {
    let all = all_clusters();
    for name in [
        "outbound|80||plain.example.com".to_string(),
        "outbound|8443||plain.example.com".to_string(),
        // The subset's tls overrides auto mTLS.
        format!("outbound|9080|v2|{REVIEWS}"),
    ] {
        let cluster = find(&all, &name);
        assert!(cluster.transport_socket.is_none(), "{name}");
        assert!(cluster.transport_socket_matches.is_empty(), "{name}");
    }
}

#[test]
fn destination_rule_istio_mutual_applies_to_every_endpoint() {
    let all = all_clusters();
    let cluster = find(&all, "outbound|80||mesh.example.com");
    assert!(cluster.transport_socket_matches.is_empty());
    assert_istio_mutual(
        cluster.transport_socket.as_ref().expect("transport socket"),
        "mesh.internal",
        &[(SanType::Uri, "spiffe://cluster.local/ns/default/sa/mesh")],
    );
    // The port-level settings replace the rule's: Istio's SNI, the service's identities (none).
    let port_level = find(&all, "outbound|8443||mesh.example.com");
    assert_istio_mutual(
        port_level
            .transport_socket
            .as_ref()
            .expect("transport socket"),
        "outbound_.8443_._.mesh.example.com",
        &[],
    );
    // A subset's port-level tls on 9443 only.
    let v3 = find(&all, &format!("outbound|9443|v3|{REVIEWS}"));
    assert_istio_mutual(
        v3.transport_socket.as_ref().expect("transport socket"),
        &format!("outbound_.9443_.v3_.{REVIEWS}"),
        &REVIEWS_SANS,
    );
    let v3_http = find(&all, &format!("outbound|9080|v3|{REVIEWS}"));
    assert!(v3_http.transport_socket.is_none());
    assert_eq!(v3_http.transport_socket_matches.len(), 2, "auto mTLS");
}

fn files_context(cluster: &Cluster) -> UpstreamTlsContext {
    assert!(cluster.transport_socket_matches.is_empty());
    upstream_context(cluster.transport_socket.as_ref().expect("transport socket"))
}

fn file(path: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(
            envoy_types::pb::envoy::config::core::v3::data_source::Specifier::Filename(
                path.to_string(),
            ),
        ),
        ..Default::default()
    })
}

fn plain_validation(context: &UpstreamTlsContext) -> Option<CertificateValidationContext> {
    match context
        .common_tls_context
        .as_ref()
        .expect("common context")
        .validation_context_type
        .clone()
    {
        None => None,
        Some(ValidationContextType::ValidationContext(v)) => Some(v),
        Some(other) => panic!("a plain validation context expected: {other:?}"),
    }
}

#[test]
fn destination_rule_simple() {
    let all = all_clusters();
    let context = files_context(find(&all, "outbound|80||simple.example.com"));
    assert_eq!(context.sni, "api.simple.example.com");
    let common = context.common_tls_context.clone().expect("common context");
    assert!(common.tls_certificate_sds_secret_configs.is_empty());
    assert!(common.tls_certificates.is_empty());
    assert!(common.alpn_protocols.is_empty());
    let validation = plain_validation(&context).expect("server verified");
    assert_eq!(validation.trusted_ca, file("/etc/certs/ca.pem"));
    assert_eq!(
        sans(&validation),
        [
            (SanType::Dns, "api.simple.example.com".to_string()),
            (SanType::Uri, "spiffe://example.org/ns/x/sa/y".to_string()),
        ]
    );
    // Port-level settings without tls do not inherit the rule's: auto mTLS on 8443.
    let port_level = find(&all, "outbound|8443||simple.example.com");
    assert!(port_level.transport_socket.is_none());
    assert_eq!(port_level.transport_socket_matches.len(), 2);

    // No caCertificates: the system roots (a validation context without trusted_ca).
    let system = files_context(find(&all, "outbound|80||system.example.com"));
    assert_eq!(system.sni, "");
    assert_eq!(
        plain_validation(&system),
        Some(CertificateValidationContext::default())
    );
    // HTTP/2 ports offer h2.
    let grpc = files_context(find(&all, "outbound|8443||system.example.com"));
    assert_eq!(
        grpc.common_tls_context.expect("common").alpn_protocols,
        ["h2"]
    );

    // insecureSkipVerify: no validation at all.
    let insecure = files_context(find(&all, "outbound|80||insecure.example.com"));
    assert_eq!(insecure.sni, "insecure.example.com");
    assert_eq!(plain_validation(&insecure), None);
}

#[test]
fn destination_rule_mutual() {
    let all = all_clusters();
    let context = files_context(find(&all, "outbound|80||mutual.example.com"));
    let common = context.common_tls_context.clone().expect("common context");
    assert_eq!(
        common.tls_certificates,
        [TlsCertificate {
            certificate_chain: file("/etc/certs/cert.pem"),
            private_key: file("/etc/certs/key.pem"),
            ..Default::default()
        }]
    );
    assert!(common.tls_certificate_sds_secret_configs.is_empty());
    let validation = plain_validation(&context).expect("server verified");
    assert_eq!(validation.trusted_ca, file("/etc/certs/ca.pem"));
    assert!(validation.match_typed_subject_alt_names.is_empty());
}

#[test]
fn merge_follows_istio() {
    let model = model_from_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: default}
spec:
  host: r.example.com
  trafficPolicy:
    tls: {mode: SIMPLE}
    portLevelSettings:
    - port: {number: 81}
      tls: {mode: DISABLE}
    - port: {number: 82}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: a
    labels: {v: a}
    trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  - name: b
    labels: {v: b}
    trafficPolicy: {loadBalancer: {simple: RANDOM}}
  - name: c
    labels: {v: c}
    trafficPolicy:
      tls: {mode: ISTIO_MUTUAL}
      portLevelSettings:
      - port: {number: 80}
        loadBalancer: {simple: RANDOM}
"#,
    );
    let rule = &model.destination_rules[0];
    let mode = |subset: Option<&str>, port| {
        client_tls(Some(rule), subset.and_then(|name| rule.subset(name)), port).map(|tls| tls.mode)
    };
    assert_eq!(mode(None, 80), Some(TlsMode::Simple));
    assert_eq!(mode(None, 81), Some(TlsMode::Disable));
    // Port-level settings without tls: none (they do not inherit the rule's).
    assert_eq!(mode(None, 82), None);
    assert_eq!(mode(Some("a"), 80), Some(TlsMode::IstioMutual));
    assert_eq!(mode(Some("a"), 81), Some(TlsMode::IstioMutual));
    // A subset without tls keeps the rule's (port-level included).
    assert_eq!(mode(Some("b"), 80), Some(TlsMode::Simple));
    assert_eq!(mode(Some("b"), 81), Some(TlsMode::Disable));
    // The subset's port-level settings replace its tls for that port.
    assert_eq!(mode(Some("c"), 80), None);
    assert_eq!(mode(Some("c"), 81), Some(TlsMode::IstioMutual));
    assert_eq!(client_tls(None, None, 80).map(|tls| tls.mode), None);
}

#[test]
fn endpoints_with_a_sidecar_carry_tls_mode_metadata() {
    let model = model_from_yaml(TLS_SERVICES);
    let assignments = load_assignments(&model);
    let all = format!("outbound|9080||{REVIEWS}");
    let assignment = assignments
        .iter()
        .find(|a| a.cluster_name == all)
        .expect("reviews assignment");
    let marked: Vec<(String, bool)> = assignment
        .endpoints
        .iter()
        .flat_map(|locality| &locality.lb_endpoints)
        .map(|lb| (address(lb), is_marked(lb)))
        .collect();
    assert_eq!(
        marked,
        [
            ("127.0.0.11".to_string(), true),
            ("127.0.0.12".to_string(), false),
            // `tlsMode: disabled`: no sidecar.
            ("127.0.0.13".to_string(), false),
        ]
    );
    // Inline endpoints of DNS clusters too.
    let all = all_clusters();
    let dns = find(&all, "outbound|80||dns.example.com");
    let marked: Vec<bool> = dns
        .load_assignment
        .iter()
        .flat_map(|cla| &cla.endpoints)
        .flat_map(|locality| &locality.lb_endpoints)
        .map(is_marked)
        .collect();
    assert_eq!(marked, [true, false]);
}

fn is_marked(lb: &LbEndpoint) -> bool {
    let Some(metadata) = &lb.metadata else {
        return false;
    };
    assert_eq!(metadata.filter_metadata.len(), 1);
    let fields = &metadata.filter_metadata["envoy.transport_socket_match"].fields;
    assert_eq!(fields.len(), 1);
    assert_eq!(
        fields["tlsMode"].kind,
        Some(Kind::StringValue("istio".to_string()))
    );
    true
}

fn address(lb: &LbEndpoint) -> String {
    use envoy_types::pb::envoy::config::core::v3::address;
    use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
    let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &lb.host_identifier else {
        panic!("endpoint expected");
    };
    let Some(address::Address::SocketAddress(socket)) =
        endpoint.address.as_ref().and_then(|a| a.address.as_ref())
    else {
        panic!("socket address expected");
    };
    socket.address.clone()
}

#[test]
fn the_metadata_exchange_filter_goes_with_mesh_mtls_only() {
    let all = all_clusters();
    let has_filter = |name: &str| {
        let filters = &find(&all, name).filters;
        assert!(filters.len() <= 1, "{name}: {filters:?}");
        filters
            .first()
            .is_some_and(|f| f.name == weft_xds::contract::METADATA_EXCHANGE)
    };
    // Auto mTLS and ISTIO_MUTUAL: some endpoint speaks mesh mTLS.
    assert!(has_filter(&format!("outbound|9080||{REVIEWS}")));
    assert!(has_filter("outbound|80||mesh.example.com"));
    // Plaintext (DISABLE, a DISABLE namespace) and TLS with files: no exchange.
    assert!(!has_filter("outbound|80||plain.example.com"));
    assert!(!has_filter("outbound|80||old.legacy.svc.cluster.local"));
    assert!(!has_filter("outbound|80||simple.example.com"));
    assert!(!has_filter("outbound|80||mutual.example.com"));
}
