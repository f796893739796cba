//! The webhooks' serving certificate, swapped without a restart: the controller's own (issued
//! by its CA and renewed with it, as istiod does for 15017), or an operator's PEM files,
//! re-read when they change (a Secret volume updated by cert-manager, say).
//!
//! ```text
//!  CertSource::Ca     ── ca::server keys watch ──┐
//!  CertSource::Files  ── poll every 10 s ────────┴─► watch<CertifiedKey> ─► Current (rustls
//!                                                    resolver) ─► one ServerConfig for ever
//! ```
//!
//! Each handshake asks [`Current`] for the key, so a renewed certificate is served from the
//! next connection on and open connections are not touched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::WebhookError;

/// How often an operator's certificate files are read again.
pub const FILE_POLL: Duration = Duration::from_secs(10);

/// Where the webhooks' certificate comes from.
#[derive(Debug)]
pub enum CertSource {
    /// The controller's serving certificate (`--webhook-cert-from-ca`).
    Ca(watch::Receiver<Arc<CertifiedKey>>),
    /// PEM files (`--webhook-cert`, `--webhook-key`), polled every `poll`.
    Files {
        cert: PathBuf,
        key: PathBuf,
        poll: Duration,
    },
}

/// The webhooks' TLS: an acceptor whose certificate follows its source, and the task that
/// re-reads files (none for the CA's certificate: the CA keeps it current).
pub struct WebhookTls {
    pub acceptor: TlsAcceptor,
    pub task: Option<JoinHandle<()>>,
}

/// Builds the acceptor; the files, when they are the source, must load now.
pub fn start(source: CertSource) -> Result<WebhookTls, WebhookError> {
    let (keys, task) = match source {
        CertSource::Ca(keys) => (keys, None),
        CertSource::Files { cert, key, poll } => {
            let first = load(&cert, &key)?;
            let (tx, rx) = watch::channel(first.key);
            let task = tokio::spawn(reload(cert, key, poll, first.files, tx));
            (rx, Some(task))
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(weft_identity::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Current(keys)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(WebhookTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        task,
    })
}

/// Hands every handshake the certificate current at that moment.
#[derive(Debug)]
struct Current(watch::Receiver<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.borrow().clone())
    }
}

/// A key loaded from files, and the bytes it was loaded from (to notice a change).
struct Loaded {
    key: Arc<CertifiedKey>,
    files: (Vec<u8>, Vec<u8>),
}

fn load(cert: &Path, key: &Path) -> Result<Loaded, WebhookError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| WebhookError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let files = (read(cert)?, read(key)?);
    let certified = certified_key(cert, &files.0, key, &files.1)?;
    Ok(Loaded {
        key: certified,
        files,
    })
}

/// Parses a PEM chain and key into the key rustls serves, checking that they match.
pub fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, WebhookError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| WebhookError::Cert {
            path: cert_path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(WebhookError::NoCert {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| WebhookError::Key {
        path: key_path.to_path_buf(),
        source,
    })?;
    let certified = CertifiedKey::from_der(certs, key, &weft_identity::tls::provider())?;
    Ok(Arc::new(certified))
}

/// Re-reads the files every `poll`; a change that loads replaces the key, one that does not
/// is logged and the last good key is kept (a half-written Secret update heals on the next
/// poll).
async fn reload(
    cert: PathBuf,
    key: PathBuf,
    poll: Duration,
    mut last: (Vec<u8>, Vec<u8>),
    tx: watch::Sender<Arc<CertifiedKey>>,
) {
    let mut ticks = tokio::time::interval(poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut failing = false;
    loop {
        ticks.tick().await;
        let files = match (std::fs::read(&cert), std::fs::read(&key)) {
            (Ok(cert), Ok(key)) => (cert, key),
            (Err(err), _) | (_, Err(err)) => {
                if !failing {
                    warn!(cert = %cert.display(), key = %key.display(), error = %err, "cannot read the webhook certificate files; serving the last good certificate");
                }
                failing = true;
                continue;
            }
        };
        if files == last {
            failing = false;
            continue;
        }
        match certified_key(&cert, &files.0, &key, &files.1) {
            Ok(certified) => {
                info!(cert = %cert.display(), "webhook certificate reloaded");
                tx.send_replace(certified);
                last = files;
                failing = false;
            }
            Err(err) => {
                if !failing {
                    warn!(error = %err, "the webhook certificate files changed but do not load; serving the last good certificate");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rustls::pki_types::ServerName;
    use weft_identity::{CaMaterial, CertificateAuthority};

    use super::*;

    /// Whether a client trusting `root` completes a handshake with `acceptor` for `name`.
    async fn handshake(acceptor: &TlsAcceptor, root: &str, name: &str) -> bool {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let acceptor = acceptor.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let _ = acceptor.accept(tcp).await;
        });
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(root.as_bytes()) {
            roots.add(cert.expect("root")).expect("added");
        }
        let config = rustls::ClientConfig::builder_with_provider(weft_identity::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let name = ServerName::try_from(name.to_string()).expect("name");
        let ok = connector.connect(name, tcp).await.is_ok();
        server.abort();
        ok
    }

    fn issue(ca: &CertificateAuthority, name: &str, dir: &Path) {
        let (chain, key) = ca
            .issue_server_cert(&[name.to_string()], Duration::from_secs(3600))
            .expect("issued");
        // As a Secret volume changes: the key first, then the chain (a poll in between sees
        // a pair that does not match, and must keep the last good one).
        std::fs::write(dir.join("tls.key"), key).expect("key");
        std::fs::write(dir.join("tls.crt"), chain).expect("chain");
    }

    #[tokio::test]
    async fn files_are_reread_and_a_bad_change_keeps_the_last_good_certificate() {
        let material =
            CaMaterial::self_signed("cluster.local", Duration::from_secs(3600)).expect("CA");
        let root = material.root_cert.clone();
        let ca = CertificateAuthority::new(material).expect("CA");
        let dir = tempfile::tempdir().expect("tempdir");
        issue(&ca, "first.test", dir.path());
        let tls = start(CertSource::Files {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            poll: Duration::from_millis(20),
        })
        .expect("loads");
        assert!(handshake(&tls.acceptor, &root, "first.test").await);
        assert!(!handshake(&tls.acceptor, &root, "second.test").await);

        issue(&ca, "second.test", dir.path());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !handshake(&tls.acceptor, &root, "second.test").await {
            assert!(
                Instant::now() < deadline,
                "the new certificate is never served"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A broken file is not served: the last good certificate is, across many polls.
        std::fs::write(dir.path().join("tls.crt"), "not a certificate").expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(handshake(&tls.acceptor, &root, "second.test").await);
    }
}
