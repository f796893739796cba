//! The admission webhooks' certificate with `--webhook-cert-from-ca`: the controller's own,
//! issued by its CA for the in-cluster Service's names (what the API server checks), and
//! re-issued when an operator rotates the root, with no restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use weft_controller::Args;
use weft_identity::authority::CaMaterial;

/// The chart's Service in the controller's default namespace.
const SERVICE: &str = "weft-controller.istio-system.svc";

async fn controller(config: &Path, ca_dir: &Path) -> weft_controller::Controller {
    let args = Args::try_parse_from([
        "weft-controller",
        "--config-dir",
        &config.display().to_string(),
        "--webhook-address",
        "127.0.0.1:0",
        "--webhook-cert-from-ca",
        "--xds-address",
        "127.0.0.1:0",
        "--debug-address",
        "127.0.0.1:0",
        "--ca-dir",
        &ca_dir.display().to_string(),
    ])
    .expect("flags parse");
    weft_controller::start(args).await.expect("starts")
}

/// `GET /ready` over TLS, trusting only `root` and checking the certificate names `name`:
/// the status line, or why the handshake failed.
async fn get_ready(address: SocketAddr, root: &[u8], name: &str) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root) {
        roots.add(cert.expect("root PEM")).expect("root added");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).expect("server name");
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|err| err.to_string())?;
    tls.write_all(b"GET /ready HTTP/1.1\r\nhost: webhook\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    tls.read_to_string(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply.lines().next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_serves_the_cas_certificate_and_follows_a_root_rotation() {
    let config = tempfile::tempdir().expect("tempdir");
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let controller = controller(config.path(), ca_dir.path()).await;
    let address = controller.webhook_address.expect("webhook served");
    let root = std::fs::read(ca_dir.path().join("root-cert.pem")).expect("the CA wrote its root");

    // What the API server does with the caBundle the controller writes: trust the CA's root
    // and check the Service's name (and istiod's, for configurations written for Istio).
    for name in [
        SERVICE,
        "istiod.istio-system.svc",
        "weft-controller.istio-system.svc.cluster.local",
    ] {
        assert_eq!(
            get_ready(address, &root, name).await.as_deref(),
            Ok("HTTP/1.1 200 OK"),
            "{name}"
        );
    }
    let wrong = get_ready(address, &root, "weft-controller.elsewhere.svc").await;
    assert!(
        wrong
            .as_ref()
            .is_err_and(|err| err.contains("not valid for name")),
        "a name the certificate does not carry: {wrong:?}"
    );

    // An operator rotates the root (Istio's `cacerts` layout in --ca-dir): new connections get
    // a certificate of the new CA; the old root no longer verifies them.
    let rotated =
        CaMaterial::self_signed("cluster.local", Duration::from_secs(3600)).expect("new root");
    rotated.write_dir(ca_dir.path()).expect("rotate");
    let new_root = rotated.root_cert.as_bytes().to_vec();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = get_ready(address, &new_root, SERVICE).await;
        if now.as_deref() == Ok("HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook still serves a certificate of the old root: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = get_ready(address, &root, SERVICE).await;
    assert!(old.is_err(), "the old root still verifies: {old:?}");
    controller.stop().await.expect("stops");
}
