use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::TrustAnchor;

use super::*;
use crate::verify::verify_path;
use crate::workload::{WorkloadCert, WorkloadError, WorkloadKey};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).expect("valid id")
}

fn anchors(bundle: &TrustBundle) -> Vec<TrustAnchor<'static>> {
    bundle
        .roots()
        .iter()
        .map(|root| {
            webpki::anchor_from_trusted_cert(root)
                .expect("anchor")
                .to_owned()
        })
        .collect()
}

fn self_signed_ca() -> CertificateAuthority {
    CertificateAuthority::new(
        CaMaterial::self_signed("cluster.local", 10 * 365 * DAY).expect("generate"),
    )
    .expect("valid CA")
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A root and an intermediate it signs, in the cacerts layout Istio's tools write.
fn intermediate_material() -> CaMaterial {
    let root_key = KeyPair::generate().expect("key");
    let root_params = ca_params("root");
    let root = root_params.self_signed(&root_key).expect("root");
    let issuer = Issuer::new(root_params, root_key);
    let key = KeyPair::generate().expect("key");
    let intermediate = ca_params("intermediate")
        .signed_by(&key, &issuer)
        .expect("intermediate");
    CaMaterial {
        ca_cert: intermediate.pem(),
        ca_key: key.serialize_pem(),
        root_cert: root.pem(),
        cert_chain: format!("{}{}", intermediate.pem(), root.pem()),
    }
}

fn leaf_of(chain: &[String]) -> CertInfo {
    let der = certs_from_pem("leaf", chain[0].as_bytes()).expect("pem");
    CertInfo::parse("leaf", &der[0]).expect("parse")
}

#[test]
fn signs_a_csr_into_an_svid_that_verifies_against_the_bundle() {
    let ca = self_signed_ca();
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr_pem(&id("default", "reviews")).expect("csr");
    let chain = ca
        .sign(&csr, &id("default", "reviews"), Duration::from_secs(3600))
        .expect("signed");
    assert_eq!(chain.len(), 2, "leaf and root: {chain:?}");
    let leaf = leaf_of(&chain);
    assert_eq!(leaf.uris, ["spiffe://cluster.local/ns/default/sa/reviews"]);
    assert!(leaf.dns_names.is_empty());
    assert!(!leaf.is_ca);
    let lifetime = leaf
        .not_after
        .duration_since(leaf.not_before)
        .expect("order");
    assert_eq!(
        lifetime,
        Duration::from_secs(3600 + 60),
        "back-dated a minute"
    );
    let root = certs_from_pem("root", chain[1].as_bytes()).expect("root");
    assert_eq!(root[0], ca.trust_bundle().roots()[0]);
    let leaf_der = certs_from_pem("leaf", chain[0].as_bytes()).expect("pem");
    verify_path(
        &leaf_der[0],
        &[],
        &anchors(ca.trust_bundle()),
        SystemTime::now(),
    )
    .expect("the leaf chains to the root");
    // Two SVIDs never share a serial number.
    let again = ca
        .sign(&csr, &id("default", "reviews"), Duration::from_secs(3600))
        .expect("signed");
    assert_ne!(leaf_of(&again).serial, leaf.serial);
}

#[test]
fn refuses_csrs_for_other_identities() {
    let ca = self_signed_ca();
    let key = WorkloadKey::generate().expect("key");
    let other = key.csr_pem(&id("default", "ratings")).expect("csr");
    let err = ca
        .sign(&other, &id("default", "reviews"), DAY)
        .expect_err("another service account");
    assert!(
        matches!(&err, SignError::IdentityMismatch { requested, allowed }
            if requested == &["spiffe://cluster.local/ns/default/sa/ratings"]
            && allowed == "spiffe://cluster.local/ns/default/sa/reviews"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("authenticated as spiffe://cluster.local/ns/default/sa/reviews")
    );
    let two = key
        .csr_pem_for_uris(&[
            "spiffe://cluster.local/ns/default/sa/reviews",
            "spiffe://cluster.local/ns/prod/sa/admin",
        ])
        .expect("csr");
    assert!(matches!(
        ca.sign(&two, &id("default", "reviews"), DAY),
        Err(SignError::IdentityMismatch { .. })
    ));
    // A CSR without SANs gets the caller's identity.
    let bare = key.csr_pem_for_uris(&[]).expect("csr");
    let chain = ca
        .sign(&bare, &id("default", "reviews"), DAY)
        .expect("signed");
    assert_eq!(
        leaf_of(&chain).uris,
        ["spiffe://cluster.local/ns/default/sa/reviews"]
    );
    assert_eq!(
        ca.sign(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            &id("a", "b"),
            DAY
        ),
        Err(SignError::BadCsr)
    );
    assert_eq!(
        ca.sign("not pem", &id("a", "b"), DAY),
        Err(SignError::BadCsr)
    );
}

#[test]
fn refuses_a_csr_whose_signature_does_not_verify() {
    let ca = self_signed_ca();
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr_pem(&id("default", "reviews")).expect("csr");
    let mut der = certs_pem_body(&csr);
    let last = der.len() - 3;
    der[last] ^= 0x01;
    let tampered = crate::cert::pem_block("CERTIFICATE REQUEST", &der);
    assert_eq!(
        ca.sign(&tampered, &id("default", "reviews"), DAY),
        Err(SignError::BadCsr)
    );
}

fn certs_pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}

#[test]
fn an_intermediate_ca_sends_its_chain() {
    let material = intermediate_material();
    let ca = CertificateAuthority::new(material.clone()).expect("valid");
    let key = WorkloadKey::generate().expect("key");
    let chain = ca
        .sign(
            &key.csr_pem(&id("ns1", "sa1")).expect("csr"),
            &id("ns1", "sa1"),
            DAY,
        )
        .expect("signed");
    assert_eq!(chain.len(), 3, "leaf, intermediate, root");
    assert_eq!(chain[1], material.ca_cert);
    assert_eq!(chain[2], material.root_cert);
    let leaf = certs_from_pem("leaf", chain[0].as_bytes()).expect("pem");
    let intermediate = certs_from_pem("ca", chain[1].as_bytes()).expect("pem");
    let anchors = anchors(ca.trust_bundle());
    verify_path(&leaf[0], &intermediate, &anchors, SystemTime::now()).expect("chains");
    assert!(verify_path(&leaf[0], &[], &anchors, SystemTime::now()).is_err());
}

#[test]
fn checks_the_material() {
    let good = intermediate_material();
    let other = intermediate_material();
    let mismatched = CaMaterial {
        ca_key: other.ca_key.clone(),
        ..good.clone()
    };
    assert!(matches!(
        CertificateAuthority::new(mismatched),
        Err(CaError::KeyMismatch)
    ));
    let untrusted = CaMaterial {
        root_cert: other.root_cert.clone(),
        cert_chain: String::new(),
        ..good.clone()
    };
    let err = CertificateAuthority::new(untrusted).expect_err("foreign root");
    assert!(matches!(err, CaError::Untrusted { .. }), "{err}");
    let leaf_as_ca = {
        let ca = CertificateAuthority::new(good.clone()).expect("valid");
        let key = WorkloadKey::generate().expect("key");
        let chain = ca
            .sign(
                &key.csr_pem(&id("a", "b")).expect("csr"),
                &id("a", "b"),
                DAY,
            )
            .expect("signed");
        CaMaterial {
            ca_cert: chain[0].clone(),
            ..good.clone()
        }
    };
    assert!(matches!(
        CertificateAuthority::new(leaf_as_ca),
        Err(CaError::NotCa)
    ));
    let garbage = CaMaterial {
        ca_key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
        ..good.clone()
    };
    let err = CertificateAuthority::new(garbage).expect_err("bad key");
    assert!(err.to_string().starts_with("ca-key.pem: "), "{err}");
}

#[test]
fn a_bundle_with_two_roots_trusts_both() {
    let old = CaMaterial::self_signed("cluster.local", DAY).expect("old");
    let new = CaMaterial::self_signed("cluster.local", DAY).expect("new");
    let both = format!("{}{}", old.root_cert, new.root_cert);
    let during = CertificateAuthority::new(CaMaterial {
        root_cert: both.clone(),
        ..old.clone()
    })
    .expect("old signer, both roots");
    assert_eq!(during.trust_bundle().roots().len(), 2);
    let after = CertificateAuthority::new(CaMaterial {
        root_cert: both,
        ..new.clone()
    })
    .expect("new signer, both roots");
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr_pem(&id("a", "b")).expect("csr");
    for ca in [&during, &after] {
        let chain = ca.sign(&csr, &id("a", "b"), DAY).expect("signed");
        let leaf = certs_from_pem("leaf", chain[0].as_bytes()).expect("pem");
        verify_path(
            &leaf[0],
            &[],
            &anchors(during.trust_bundle()),
            SystemTime::now(),
        )
        .expect("trusted by the two-root bundle");
    }
    let new_only = CertificateAuthority::new(new).expect("new");
    let chain = during.sign(&csr, &id("a", "b"), DAY).expect("signed");
    let leaf = certs_from_pem("leaf", chain[0].as_bytes()).expect("pem");
    assert!(
        verify_path(
            &leaf[0],
            &[],
            &anchors(new_only.trust_bundle()),
            SystemTime::now()
        )
        .is_err(),
        "a certificate of the old root is not trusted once the old root is gone"
    );
}

#[test]
fn reads_and_writes_the_cacerts_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        CaMaterial::read_dir(dir.path())
            .expect("empty dir")
            .is_none()
    );
    let material = intermediate_material();
    material.write_dir(dir.path()).expect("written");
    let read = CaMaterial::read_dir(dir.path())
        .expect("read")
        .expect("present");
    assert_eq!(read, material);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(CA_KEY))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
    }
    std::fs::remove_file(dir.path().join(CA_KEY)).expect("rm");
    let err = CaMaterial::read_dir(dir.path()).expect_err("incomplete");
    assert!(
        err.to_string()
            .contains("ca-cert.pem is present but ca-key.pem is not"),
        "{err}"
    );
    // Without root-cert.pem, the CA certificate is its own root.
    let solo = tempfile::tempdir().expect("tempdir");
    let own = CaMaterial::self_signed("td", DAY).expect("gen");
    std::fs::write(solo.path().join(CA_CERT), &own.ca_cert).expect("write");
    std::fs::write(solo.path().join(CA_KEY), &own.ca_key).expect("write");
    let read = CaMaterial::read_dir(solo.path())
        .expect("read")
        .expect("present");
    assert_eq!(read.root_cert, own.ca_cert);
    CertificateAuthority::new(read).expect("usable");
}

#[test]
fn workload_certs_are_checked_against_the_key_and_identity() {
    let ca = self_signed_ca();
    let provider = crate::tls::provider();
    let key = WorkloadKey::generate().expect("key");
    let me = id("default", "reviews");
    let chain = ca
        .sign(&key.csr_pem(&me).expect("csr"), &me, DAY)
        .expect("signed");
    let cert = WorkloadCert::from_response(key, &chain, &me, &provider).expect("usable");
    assert_eq!(cert.chain.len(), 1, "the root is not presented");
    assert_eq!(cert.info.spiffe_id(), Some(me.clone()));

    let key = WorkloadKey::generate().expect("key");
    let err = WorkloadCert::from_response(key, &chain, &me, &provider).expect_err("other key");
    assert!(matches!(err, WorkloadError::WrongKey), "{err}");
    let key = WorkloadKey::generate().expect("key");
    let chain = ca
        .sign(&key.csr_pem(&me).expect("csr"), &me, DAY)
        .expect("signed");
    let err = WorkloadCert::from_response(key, &chain, &id("default", "other"), &provider)
        .expect_err("other identity");
    assert!(matches!(err, WorkloadError::WrongIdentity { .. }), "{err}");
    let key = WorkloadKey::generate().expect("key");
    assert!(matches!(
        WorkloadCert::from_response(key, &[], &me, &provider),
        Err(WorkloadError::EmptyChain)
    ));
}

#[test]
fn tells_when_the_signing_root_and_chain_expire() {
    let at = |seconds| time::OffsetDateTime::from_unix_timestamp(seconds).expect("time");
    // Root until 2040, intermediate until 2035 (instants as unix seconds).
    let (root_end, intermediate_end) = (2_208_988_800, 2_051_222_400);
    let root_key = KeyPair::generate().expect("key");
    let mut root_params = ca_params("root");
    root_params.not_after = at(root_end);
    let root = root_params.self_signed(&root_key).expect("root");
    let issuer = Issuer::new(root_params, root_key);
    let key = KeyPair::generate().expect("key");
    let mut intermediate_params = ca_params("intermediate");
    intermediate_params.not_after = at(intermediate_end);
    let intermediate = intermediate_params
        .signed_by(&key, &issuer)
        .expect("intermediate");
    let other = CaMaterial::self_signed("cluster.local", DAY).expect("other root");
    let ca = CertificateAuthority::new(CaMaterial {
        ca_cert: intermediate.pem(),
        ca_key: key.serialize_pem(),
        // The signing root second: the bundle's first root is another one.
        root_cert: format!("{}{}", other.root_cert, root.pem()),
        cert_chain: format!("{}{}", intermediate.pem(), root.pem()),
    })
    .expect("valid");
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    };
    assert_eq!(ca.root_info().subject, "CN=root");
    assert_eq!(unix(ca.root_info().not_after), root_end as u64);
    assert_eq!(unix(ca.chain_not_after()), intermediate_end as u64);

    // A self-signed root is its own chain.
    let own = self_signed_ca();
    assert_eq!(own.root_info(), own.ca_info());
    assert_eq!(own.chain_not_after(), own.ca_info().not_after);
}
