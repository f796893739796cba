use std::time::Duration;

use tonic::Code;
use weft_identity::{CaMaterial, CertInfo, SpiffeId, WorkloadKey};

use super::*;

struct Fixture {
    _tokens: tempfile::TempDir,
    service: CaService,
    /// Replaces the CA in use, as a reload of the cacerts files or Secret does.
    ca: watch::Sender<Arc<CertificateAuthority>>,
}

/// `/metrics` with only the CA's metrics registered.
fn scrape(service: &CaService) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    service.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    text
}

/// The value of the sample line `name` (without labels) in `text`.
fn sample(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

fn unix(time: std::time::SystemTime) -> i64 {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    i64::try_from(seconds).expect("fits")
}

fn fixture() -> Fixture {
    let tokens = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tokens.path().join("default")).expect("mkdir");
    std::fs::write(tokens.path().join("default/reviews"), "token-reviews").expect("write");
    let ca = CertificateAuthority::new(
        CaMaterial::self_signed("cluster.local", Duration::from_secs(3600)).expect("gen"),
    )
    .expect("ca");
    let (tx, rx) = watch::channel(Arc::new(ca));
    let service = CaService::new(
        rx,
        Authenticator::LocalTokens {
            dir: Some(tokens.path().to_path_buf()),
        },
        CaSettings {
            trust_domain: "cluster.local".into(),
            default_lifetime: Duration::from_secs(24 * 3600),
            max_lifetime: Duration::from_secs(48 * 3600),
        },
    );
    Fixture {
        _tokens: tokens,
        service,
        ca: tx,
    }
}

fn request(csr: String, token: Option<&str>, validity: i64) -> Request<IstioCertificateRequest> {
    let mut request = Request::new(IstioCertificateRequest {
        csr,
        validity_duration: validity,
        metadata: None,
    });
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
    }
    request
}

fn csr_for(ns: &str, sa: &str) -> String {
    let id = SpiffeId::new("cluster.local", ns, sa).expect("id");
    WorkloadKey::generate()
        .expect("key")
        .csr_pem(&id)
        .expect("csr")
}

fn leaf(chain: &[String]) -> CertInfo {
    let der = weft_identity::cert::certs_from_pem("leaf", chain[0].as_bytes()).expect("pem");
    CertInfo::parse("leaf", &der[0]).expect("cert")
}

#[tokio::test]
async fn issues_the_identity_the_token_proves() {
    let f = fixture();
    let response = f
        .service
        .create_certificate(request(
            csr_for("default", "reviews"),
            Some("token-reviews"),
            0,
        ))
        .await
        .expect("issued")
        .into_inner();
    let leaf = leaf(&response.cert_chain);
    assert_eq!(leaf.uris, ["spiffe://cluster.local/ns/default/sa/reviews"]);
    let lifetime = leaf
        .not_after
        .duration_since(leaf.not_before)
        .expect("order");
    assert_eq!(
        lifetime,
        Duration::from_secs(24 * 3600 + 60),
        "the default lifetime"
    );

    let response = f
        .service
        .create_certificate(request(
            csr_for("default", "reviews"),
            Some("token-reviews"),
            60,
        ))
        .await
        .expect("issued")
        .into_inner();
    let leaf = super::tests::leaf(&response.cert_chain);
    let lifetime = leaf
        .not_after
        .duration_since(leaf.not_before)
        .expect("order");
    assert_eq!(lifetime, Duration::from_secs(120), "the asked lifetime");
}

#[tokio::test]
async fn refuses_with_a_reason() {
    let f = fixture();
    let cases = [
        (
            request(csr_for("default", "ratings"), Some("token-reviews"), 0),
            Code::PermissionDenied,
            "authenticated as spiffe://cluster.local/ns/default/sa/reviews",
        ),
        (
            request(csr_for("prod", "reviews"), Some("token-reviews"), 0),
            Code::PermissionDenied,
            "spiffe://cluster.local/ns/prod/sa/reviews",
        ),
        (
            request(csr_for("default", "reviews"), None, 0),
            Code::Unauthenticated,
            "authorization: Bearer",
        ),
        (
            request(csr_for("default", "reviews"), Some("stolen"), 0),
            Code::Unauthenticated,
            "no bootstrap token",
        ),
        (
            request(
                csr_for("default", "reviews"),
                Some("token-reviews"),
                49 * 3600,
            ),
            Code::InvalidArgument,
            "longer than the maximum",
        ),
        (
            request(csr_for("default", "reviews"), Some("token-reviews"), -5),
            Code::InvalidArgument,
            "negative",
        ),
        (
            request("garbage".into(), Some("token-reviews"), 0),
            Code::InvalidArgument,
            "CSR",
        ),
    ];
    for (request, code, reason) in cases {
        let status = f
            .service
            .create_certificate(request)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(reason),
            "{:?} lacks {reason:?}",
            status.message()
        );
    }
    f.service
        .create_certificate(request(
            csr_for("default", "reviews"),
            Some("token-reviews"),
            0,
        ))
        .await
        .expect("issued");

    // Each refusal is counted by its kind, under istiod's names.
    let text = scrape(&f.service);
    for line in [
        "# TYPE citadel_server_csr_count counter",
        "citadel_server_csr_count 8",
        "citadel_server_success_cert_issuance_count 1",
        "citadel_server_authentication_failure_count 2",
        "citadel_server_id_extraction_err_count 2",
        "citadel_server_csr_parsing_err_count 3",
        "citadel_server_csr_sign_err_count 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[test]
fn expiry_gauges_are_the_ca_in_use_and_follow_its_replacement() {
    let f = fixture();
    let before = f.ca.borrow().clone();
    let text = scrape(&f.service);
    for line in [
        "# TYPE citadel_server_root_cert_expiry_timestamp gauge",
        "# TYPE citadel_server_root_cert_expiry_seconds gauge",
        "# TYPE citadel_server_cert_chain_expiry_timestamp gauge",
        "# TYPE citadel_server_cert_chain_expiry_seconds gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let root_end = unix(before.root_info().not_after);
    let now = unix(std::time::SystemTime::now());
    assert_eq!(
        sample(&text, "citadel_server_root_cert_expiry_timestamp"),
        root_end
    );
    // The fixture's self-signed root is its own chain.
    assert_eq!(
        sample(&text, "citadel_server_cert_chain_expiry_timestamp"),
        root_end
    );
    for name in [
        "citadel_server_root_cert_expiry_seconds",
        "citadel_server_cert_chain_expiry_seconds",
    ] {
        let left = sample(&text, name);
        assert!(
            (root_end - now - 5..=root_end - now + 5).contains(&left),
            "{name} {left}, expected about {}",
            root_end - now
        );
    }

    // The cacerts change: a root and an intermediate with a shorter life than the root.
    let (root_end, chain_end) = (
        rcgen::date_time_ymd(2081, 1, 1),
        rcgen::date_time_ymd(2071, 6, 1),
    );
    let ca_params = |cn: &str, not_after| {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.not_after = not_after;
        params
    };
    let root_key = rcgen::KeyPair::generate().expect("key");
    let root_params = ca_params("rotated root", root_end);
    let root = root_params.self_signed(&root_key).expect("root");
    let key = rcgen::KeyPair::generate().expect("key");
    let intermediate = ca_params("rotated intermediate", chain_end)
        .signed_by(&key, &rcgen::Issuer::new(root_params, root_key))
        .expect("intermediate");
    let rotated = CertificateAuthority::new(CaMaterial {
        ca_cert: intermediate.pem(),
        ca_key: key.serialize_pem(),
        root_cert: root.pem(),
        cert_chain: format!("{}{}", intermediate.pem(), root.pem()),
    })
    .expect("valid");
    f.ca.send_replace(Arc::new(rotated));
    let (root_end, chain_end) = (root_end.unix_timestamp(), chain_end.unix_timestamp());
    let text = scrape(&f.service);
    assert_eq!(
        sample(&text, "citadel_server_root_cert_expiry_timestamp"),
        root_end
    );
    assert_eq!(
        sample(&text, "citadel_server_cert_chain_expiry_timestamp"),
        chain_end
    );
    let left = sample(&text, "citadel_server_cert_chain_expiry_seconds");
    assert!(
        (chain_end - now - 5..=chain_end - now + 5).contains(&left),
        "{left}"
    );
}
