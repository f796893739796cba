use std::time::Duration;

use tonic::Code;
use weft_identity::{CaMaterial, CertInfo, SpiffeId, WorkloadKey};

use super::*;

struct Fixture {
    _tokens: tempfile::TempDir,
    service: CaService,
}

fn fixture() -> Fixture {
    let tokens = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tokens.path().join("default")).expect("mkdir");
    std::fs::write(tokens.path().join("default/reviews"), "token-reviews").expect("write");
    let ca = CertificateAuthority::new(
        CaMaterial::self_signed("cluster.local", Duration::from_secs(3600)).expect("gen"),
    )
    .expect("ca");
    let (_tx, rx) = watch::channel(Arc::new(ca));
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
    let mut registry = prometheus_client::registry::Registry::default();
    f.service.stats().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
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
