//! Mutual TLS between two workload certificates, in memory: identities verified both ways,
//! TLS 1.3 and Istio's ALPN negotiated, wrong identities and foreign roots refused.

use std::time::Duration;

use rustls::{ClientConnection, ServerConnection};
use weft_identity::cert::certs_from_pem;
use weft_identity::tls::{self, ALPN_ISTIO, ALPN_ISTIO_PEER_EXCHANGE};
use weft_identity::verify::peer_uri;
use weft_identity::{CaMaterial, CertificateAuthority, SpiffeId, WorkloadCert, WorkloadKey};

const DAY: Duration = Duration::from_secs(86_400);

fn ca() -> CertificateAuthority {
    CertificateAuthority::new(CaMaterial::self_signed("cluster.local", DAY).expect("gen"))
        .expect("ca")
}

fn workload(ca: &CertificateAuthority, ns: &str, sa: &str) -> WorkloadCert {
    let id = SpiffeId::new("cluster.local", ns, sa).expect("id");
    let key = WorkloadKey::generate().expect("key");
    let chain = ca
        .sign(&key.csr_pem(&id).expect("csr"), &id, DAY)
        .expect("signed");
    WorkloadCert::from_response(key, &chain, &id, &tls::provider()).expect("cert")
}

/// Runs the handshake to completion or the first error.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), String> {
    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).map_err(|e| e.to_string())?;
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            server.read_tls(&mut slice).map_err(|e| e.to_string())?;
        }
        server
            .process_new_packets()
            .map_err(|e| format!("server: {e}"))?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).map_err(|e| e.to_string())?;
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).map_err(|e| e.to_string())?;
        }
        client
            .process_new_packets()
            .map_err(|e| format!("client: {e}"))?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err("handshake did not finish".into())
}

fn connect(
    client_cert: &WorkloadCert,
    server_cert: &WorkloadCert,
    client_ca: &CertificateAuthority,
    server_ca: &CertificateAuthority,
    expected: &[&str],
) -> Result<(ClientConnection, ServerConnection), String> {
    let alpn = [ALPN_ISTIO_PEER_EXCHANGE, ALPN_ISTIO];
    let client = tls::client_config(
        Some(client_cert),
        client_ca.trust_bundle(),
        expected.iter().map(ToString::to_string).collect(),
        &alpn,
    )
    .expect("client config");
    let server = tls::server_config(server_cert, server_ca.trust_bundle(), false, &[ALPN_ISTIO])
        .expect("server config");
    let name = rustls::pki_types::ServerName::try_from(
        "outbound_.9080_._.reviews.default.svc.cluster.local",
    )
    .expect("sni");
    let mut c =
        ClientConnection::new(std::sync::Arc::new(client), name.to_owned()).expect("client");
    let mut s = ServerConnection::new(std::sync::Arc::new(server)).expect("server");
    handshake(&mut c, &mut s)?;
    Ok((c, s))
}

#[test]
fn both_identities_are_verified_over_tls13() {
    let ca = ca();
    let productpage = workload(&ca, "default", "productpage");
    let reviews = workload(&ca, "default", "reviews");
    let (client, server) = connect(
        &productpage,
        &reviews,
        &ca,
        &ca,
        &["spiffe://cluster.local/ns/default/sa/reviews"],
    )
    .expect("handshake");
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(client.alpn_protocol(), Some(ALPN_ISTIO));
    let client_seen = server.peer_certificates().expect("client certificate");
    assert_eq!(
        peer_uri(&client_seen[0]).as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/productpage")
    );
    let server_seen = client.peer_certificates().expect("server certificate");
    assert_eq!(
        peer_uri(&server_seen[0]).as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/reviews")
    );
    // No expected identity: any certificate of the bundle.
    connect(&productpage, &reviews, &ca, &ca, &[]).expect("any identity");
}

#[test]
fn a_server_with_another_identity_is_refused() {
    let ca = ca();
    let productpage = workload(&ca, "default", "productpage");
    let ratings = workload(&ca, "default", "ratings");
    let err = connect(
        &productpage,
        &ratings,
        &ca,
        &ca,
        &["spiffe://cluster.local/ns/default/sa/reviews"],
    )
    .expect_err("wrong identity");
    assert!(
        err.contains("SanMismatch") && err.contains("sa/ratings"),
        "{err}"
    );
}

#[test]
fn certificates_of_a_foreign_root_are_refused_both_ways() {
    let ours = ca();
    let theirs = ca();
    let client = workload(&ours, "default", "productpage");
    let server = workload(&theirs, "default", "reviews");
    let err = connect(&client, &server, &ours, &theirs, &[]).expect_err("server untrusted");
    assert!(err.contains("client:"), "{err}");
    let err = connect(&client, &server, &theirs, &theirs, &[]).expect_err("client untrusted");
    assert!(err.contains("server:"), "{err}");
}

#[test]
fn a_workload_presents_its_intermediate() {
    let ca = ca();
    let cert = workload(&ca, "default", "reviews");
    let chain_pem: String = weft_identity::cert::to_pem(&cert.chain);
    assert_eq!(
        certs_from_pem("chain", chain_pem.as_bytes())
            .expect("pem")
            .len(),
        1
    );
}
