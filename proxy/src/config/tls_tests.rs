use envoy_types::pb::envoy::config::core::v3::{
    DataSource, TransportSocket, data_source, transport_socket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use prost::{Message, Name};

use super::*;

fn sds(name: &str) -> tls::SdsSecretConfig {
    tls::SdsSecretConfig {
        name: name.to_string(),
        ..Default::default()
    }
}

fn socket<M: Message + Name>(message: &M) -> TransportSocket {
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
            type_url: M::type_url(),
            value: message.encode_to_vec(),
        })),
    }
}

fn uri(exact: &str) -> tls::SubjectAltNameMatcher {
    tls::SubjectAltNameMatcher {
        san_type: tls::subject_alt_name_matcher::SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(exact.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The upstream context istiod sends for auto mTLS.
fn istio_upstream(secret: &str, roots: &str) -> tls::UpstreamTlsContext {
    tls::UpstreamTlsContext {
        sni: "outbound_.9080_._.reviews.default.svc.cluster.local".to_string(),
        common_tls_context: Some(tls::CommonTlsContext {
            tls_params: Some(tls::TlsParameters {
                tls_minimum_protocol_version: tls::tls_parameters::TlsProtocol::TlSv13 as i32,
                ..Default::default()
            }),
            alpn_protocols: vec!["istio-peer-exchange".into(), "istio".into()],
            tls_certificate_sds_secret_configs: vec![sds(secret)],
            validation_context_type: Some(
                tls::common_tls_context::ValidationContextType::CombinedValidationContext(
                    tls::common_tls_context::CombinedCertificateValidationContext {
                        default_validation_context: Some(tls::CertificateValidationContext {
                            match_typed_subject_alt_names: vec![uri(
                                "spiffe://cluster.local/ns/default/sa/reviews",
                            )],
                            ..Default::default()
                        }),
                        validation_context_sds_secret_config: Some(sds(roots)),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn istio_auto_mtls_is_mesh_tls() {
    let tls = upstream_socket(socket(&istio_upstream("default", "ROOTCA")))
        .expect("accepted")
        .expect("TLS");
    assert_eq!(
        *tls,
        UpstreamTls::Mesh {
            sni: Some("outbound_.9080_._.reviews.default.svc.cluster.local".into()),
            alpn: vec!["istio-peer-exchange".into(), "istio".into()],
            sans: vec![SanMatch {
                kind: Some(SanKind::Uri),
                pattern: SanPattern::Exact("spiffe://cluster.local/ns/default/sa/reviews".into()),
            }],
        }
    );
}

#[test]
fn unknown_secrets_and_fields_are_rejected_by_name() {
    let err = upstream_socket(socket(&istio_upstream("file-cert:/x", "ROOTCA")))
        .expect_err("unknown secret");
    assert!(
        err.to_string()
            .contains("SDS secret \"file-cert:/x\" is unknown"),
        "{err}"
    );
    let err =
        upstream_socket(socket(&istio_upstream("default", "other"))).expect_err("unknown roots");
    assert!(err.to_string().contains("\"other\""), "{err}");
    let mut renegotiate = istio_upstream("default", "ROOTCA");
    renegotiate.allow_renegotiation = true;
    let err = upstream_socket(socket(&renegotiate)).expect_err("renegotiation");
    assert!(err.to_string().contains("allow_renegotiation"), "{err}");
    let odd = TransportSocket {
        name: "envoy.transport_sockets.alts".into(),
        config_type: None,
    };
    assert!(
        upstream_socket(odd)
            .expect_err("alts")
            .to_string()
            .contains("envoy.transport_sockets.alts")
    );
    let wrong_type = socket(&tls::DownstreamTlsContext::default());
    assert!(
        upstream_socket(wrong_type)
            .expect_err("downstream type")
            .to_string()
            .contains("expected")
    );
}

#[test]
fn raw_buffer_is_plaintext() {
    let raw = TransportSocket {
        name: RAW_BUFFER_TRANSPORT_SOCKET.into(),
        config_type: None,
    };
    assert_eq!(upstream_socket(raw).expect("ok"), None);
}

#[test]
fn destination_rule_tls_with_files() {
    let file = |path: &str| DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    };
    let mutual = tls::UpstreamTlsContext {
        sni: "api.example.com".into(),
        common_tls_context: Some(tls::CommonTlsContext {
            tls_certificates: vec![tls::TlsCertificate {
                certificate_chain: Some(file("/etc/certs/client.pem")),
                private_key: Some(file("/etc/certs/key.pem")),
                ..Default::default()
            }],
            validation_context_type: Some(
                tls::common_tls_context::ValidationContextType::ValidationContext(
                    tls::CertificateValidationContext {
                        trusted_ca: Some(file("/etc/certs/ca.pem")),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let tls = upstream_socket(socket(&mutual)).expect("ok").expect("tls");
    assert_eq!(
        *tls,
        UpstreamTls::Files {
            sni: Some("api.example.com".into()),
            alpn: vec![],
            ca: Some("/etc/certs/ca.pem".into()),
            verify: true,
            sans: vec![],
            client_cert: Some(("/etc/certs/client.pem".into(), "/etc/certs/key.pem".into())),
        }
    );
    // SIMPLE without validation: insecureSkipVerify.
    let simple = tls::UpstreamTlsContext {
        sni: "api.example.com".into(),
        ..Default::default()
    };
    let tls = upstream_socket(socket(&simple)).expect("ok").expect("tls");
    assert!(matches!(
        *tls,
        UpstreamTls::Files {
            verify: false,
            client_cert: None,
            ..
        }
    ));
}

#[test]
fn downstream_mesh_tls() {
    let context = tls::DownstreamTlsContext {
        require_client_certificate: Some(BoolValue { value: true }),
        common_tls_context: Some(tls::CommonTlsContext {
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            tls_certificate_sds_secret_configs: vec![sds("default")],
            validation_context_type: Some(
                tls::common_tls_context::ValidationContextType::CombinedValidationContext(
                    tls::common_tls_context::CombinedCertificateValidationContext {
                        default_validation_context: Some(Default::default()),
                        validation_context_sds_secret_config: Some(sds("ROOTCA")),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let tls = downstream_socket(socket(&context))
        .expect("ok")
        .expect("tls");
    assert_eq!(
        tls,
        DownstreamTls {
            alpn: vec!["h2".into(), "http/1.1".into()],
            require_client_certificate: true,
        }
    );
    let files = tls::DownstreamTlsContext {
        common_tls_context: Some(tls::CommonTlsContext {
            tls_certificates: vec![tls::TlsCertificate::default()],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(downstream_socket(socket(&files)).is_err());
}

#[test]
fn san_matchers() {
    let uri_exact = SanMatch {
        kind: Some(SanKind::Uri),
        pattern: SanPattern::Exact("spiffe://td/ns/a/sa/b".into()),
    };
    assert!(uri_exact.matches(SanKind::Uri, "spiffe://td/ns/a/sa/b"));
    assert!(!uri_exact.matches(SanKind::Dns, "spiffe://td/ns/a/sa/b"));
    let any_suffix = SanMatch {
        kind: None,
        pattern: SanPattern::Suffix(".example.com".into()),
    };
    assert!(any_suffix.matches(SanKind::Dns, "api.example.com"));
    assert!(!any_suffix.matches(SanKind::Dns, "example.org"));
}
