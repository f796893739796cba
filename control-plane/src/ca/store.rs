//! Where the CA's key material lives, and its reloads: a directory in Istio's `cacerts`
//! layout (local mode), the `cacerts` / `istio-ca-secret` Secrets of the controller's
//! namespace (Kubernetes), or memory. A changed, valid set replaces the CA at once (root
//! rotation needs no restart); an invalid one is logged and the CA in use is kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use weft_identity::{CaError, CaMaterial, CertificateAuthority};

/// The Secret an operator puts their CA in (Istio's plug-in CA).
pub const PLUGGED_SECRET: &str = "cacerts";
/// The Secret the self-signed root is kept in (Istio's name).
pub const SELF_SIGNED_SECRET: &str = "istio-ca-secret";
/// Lifetime of a self-signed root (Istio's `CITADEL_SELF_SIGNED_CA_CERT_TTL`, 10 years).
pub const SELF_SIGNED_ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How often the directory is checked for changed files.
const DIR_POLL: Duration = Duration::from_secs(2);
/// How often the Secrets are read again.
const SECRET_POLL: Duration = Duration::from_secs(10);

/// Why the CA could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("CA in {origin}: {source}")]
    Ca {
        origin: String,
        #[source]
        source: CaError,
    },
    #[error("CA Secret {namespace}/{name}: {reason}")]
    Kube {
        namespace: String,
        name: String,
        reason: String,
    },
}

/// Where the CA is kept.
#[derive(Clone)]
pub enum CaStore {
    /// In memory only: a new root on every start.
    Memory,
    /// A directory in the `cacerts` layout.
    Dir(PathBuf),
    /// Secrets in the controller's namespace.
    Kube { client: Client, namespace: String },
}

impl std::fmt::Debug for CaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Kube { namespace, .. } => write!(f, "Secrets in {namespace}"),
        }
    }
}

impl CaStore {
    /// Loads the CA, creating and persisting a self-signed root when there is none.
    pub async fn load(&self, trust_domain: &str) -> Result<Arc<CertificateAuthority>, StoreError> {
        let (material, origin) = match self {
            Self::Memory => {
                warn!(
                    "no --ca-dir: the CA's root lives in memory; a restart makes a new root and every workload must renew"
                );
                (
                    self_signed(trust_domain, "memory")?,
                    "memory (self-signed)".to_string(),
                )
            }
            Self::Dir(dir) => {
                let origin = dir.display().to_string();
                let read = CaMaterial::read_dir(dir).map_err(|source| StoreError::Ca {
                    origin: origin.clone(),
                    source,
                })?;
                match read {
                    Some(material) => (material, origin),
                    None => {
                        let material = self_signed(trust_domain, &origin)?;
                        material.write_dir(dir).map_err(|source| StoreError::Ca {
                            origin: origin.clone(),
                            source,
                        })?;
                        info!(dir = %origin, "created a self-signed root CA and saved it");
                        (material, origin)
                    }
                }
            }
            Self::Kube { client, namespace } => kube_load(client, namespace, trust_domain).await?,
        };
        let ca = CertificateAuthority::new(material).map_err(|source| StoreError::Ca {
            origin: origin.clone(),
            source,
        })?;
        log_ca(&ca, &origin);
        Ok(Arc::new(ca))
    }

    /// Watches the store and publishes every valid change into `tx`.
    pub fn spawn_reload(
        &self,
        tx: watch::Sender<Arc<CertificateAuthority>>,
    ) -> Option<JoinHandle<()>> {
        let store = self.clone();
        match self {
            Self::Memory => None,
            Self::Dir(_) | Self::Kube { .. } => Some(tokio::spawn(async move {
                let period = if matches!(store, Self::Dir(_)) {
                    DIR_POLL
                } else {
                    SECRET_POLL
                };
                let mut last_error = None;
                loop {
                    tokio::time::sleep(period).await;
                    let current = tx.borrow().material().clone();
                    let read = match &store {
                        Self::Dir(dir) => CaMaterial::read_dir(dir).map_err(|e| e.to_string()),
                        Self::Kube { client, namespace } => kube_read(client, namespace)
                            .await
                            .map(|found| found.map(|(material, _)| material))
                            .map_err(|e| e.to_string()),
                        Self::Memory => return,
                    };
                    let material = match read {
                        Ok(Some(material)) if material != current => material,
                        Ok(_) => continue,
                        Err(err) => {
                            if last_error.as_ref() != Some(&err) {
                                error!(store = ?store, error = %err, "cannot read the CA; keeping the one in use");
                                last_error = Some(err);
                            }
                            continue;
                        }
                    };
                    match CertificateAuthority::new(material) {
                        Ok(ca) => {
                            log_ca(&ca, &format!("{store:?} (reloaded)"));
                            last_error = None;
                            tx.send_replace(Arc::new(ca));
                        }
                        Err(err) => {
                            let err = err.to_string();
                            if last_error.as_ref() != Some(&err) {
                                error!(store = ?store, error = %err, "the changed CA is not valid; keeping the one in use");
                                last_error = Some(err);
                            }
                        }
                    }
                }
            })),
        }
    }
}

fn self_signed(trust_domain: &str, origin: &str) -> Result<CaMaterial, StoreError> {
    CaMaterial::self_signed(trust_domain, SELF_SIGNED_ROOT_LIFETIME).map_err(|source| {
        StoreError::Ca {
            origin: origin.to_string(),
            source,
        }
    })
}

fn log_ca(ca: &CertificateAuthority, origin: &str) {
    let info = ca.ca_info();
    let roots: Vec<&str> = ca
        .trust_bundle()
        .infos()
        .iter()
        .map(|root| root.serial.as_str())
        .collect();
    info!(
        origin,
        subject = %info.subject,
        serial = %info.serial,
        roots = ?roots,
        "certificate authority ready"
    );
}

/// The operator's `cacerts` Secret, else the self-signed `istio-ca-secret`.
async fn kube_read(
    client: &Client,
    namespace: &str,
) -> Result<Option<(CaMaterial, String)>, StoreError> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    for name in [PLUGGED_SECRET, SELF_SIGNED_SECRET] {
        let secret = api.get_opt(name).await.map_err(|err| StoreError::Kube {
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason: err.to_string(),
        })?;
        if let Some(secret) = secret {
            let material = from_secret(&secret).map_err(|reason| StoreError::Kube {
                namespace: namespace.to_string(),
                name: name.to_string(),
                reason,
            })?;
            return Ok(Some((material, format!("Secret {namespace}/{name}"))));
        }
    }
    Ok(None)
}

async fn kube_load(
    client: &Client,
    namespace: &str,
    trust_domain: &str,
) -> Result<(CaMaterial, String), StoreError> {
    if let Some(found) = kube_read(client, namespace).await? {
        return Ok(found);
    }
    let origin = format!("Secret {namespace}/{SELF_SIGNED_SECRET}");
    let material = self_signed(trust_domain, &origin)?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SELF_SIGNED_SECRET.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        type_: Some("istio.io/ca-root".to_string()),
        data: Some(
            material
                .files()
                .iter()
                .map(|(name, text)| (name.to_string(), ByteString(text.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    };
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            info!(secret = %origin, "created a self-signed root CA and saved it");
            Ok((material, origin))
        }
        // Another replica created it first: use theirs.
        Err(kube::Error::Api(status)) if status.code == 409 => kube_read(client, namespace)
            .await?
            .ok_or_else(|| StoreError::Kube {
                namespace: namespace.to_string(),
                name: SELF_SIGNED_SECRET.to_string(),
                reason: "created by someone else, then gone".to_string(),
            }),
        Err(err) => Err(StoreError::Kube {
            namespace: namespace.to_string(),
            name: SELF_SIGNED_SECRET.to_string(),
            reason: format!("cannot create it: {err}"),
        }),
    }
}

fn from_secret(secret: &Secret) -> Result<CaMaterial, String> {
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| -> Result<Option<String>, String> {
        data.get(key)
            .map(|bytes| {
                String::from_utf8(bytes.0.clone()).map_err(|_| format!("{key} is not UTF-8 PEM"))
            })
            .transpose()
    };
    let ca_cert = text(weft_identity::authority::CA_CERT)?
        .ok_or_else(|| format!("no {}", weft_identity::authority::CA_CERT))?;
    let ca_key = text(weft_identity::authority::CA_KEY)?
        .ok_or_else(|| format!("no {}", weft_identity::authority::CA_KEY))?;
    Ok(CaMaterial {
        root_cert: text(weft_identity::authority::ROOT_CERT)?.unwrap_or_else(|| ca_cert.clone()),
        cert_chain: text(weft_identity::authority::CERT_CHAIN)?.unwrap_or_default(),
        ca_cert,
        ca_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_ca_is_created_once_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CaStore::Dir(dir.path().join("ca"));
        let first = store.load("cluster.local").await.expect("created");
        let second = store.load("cluster.local").await.expect("read back");
        assert_eq!(first.material(), second.material());
        assert_eq!(first.ca_info().serial, second.ca_info().serial);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_directory_replaces_the_ca_and_a_broken_one_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CaStore::Dir(dir.path().to_path_buf());
        let ca = store.load("cluster.local").await.expect("created");
        let (tx, mut rx) = watch::channel(ca.clone());
        let task = store.spawn_reload(tx).expect("a directory is watched");

        // Broken: a key that is not the certificate's. Kept.
        let other =
            CaMaterial::self_signed("cluster.local", Duration::from_secs(3600)).expect("gen");
        std::fs::write(dir.path().join("ca-key.pem"), &other.ca_key).expect("write");
        tokio::time::sleep(DIR_POLL * 3).await;
        assert!(
            !rx.has_changed().expect("alive"),
            "an invalid CA must not replace the one in use"
        );

        // Rotation step: both roots trusted.
        let both = CaMaterial {
            root_cert: format!("{}{}", ca.material().root_cert, other.root_cert),
            ..ca.material().clone()
        };
        both.write_dir(dir.path()).expect("write");
        tokio::time::timeout(DIR_POLL * 5, rx.changed())
            .await
            .expect("reloaded within a few polls")
            .expect("alive");
        assert_eq!(rx.borrow().trust_bundle().roots().len(), 2);
        task.abort();
    }

    #[test]
    fn secrets_need_the_certificate_and_key() {
        let material = CaMaterial::self_signed("td", Duration::from_secs(60)).expect("gen");
        let mut secret = Secret {
            data: Some(
                material
                    .files()
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        assert_eq!(from_secret(&secret).expect("complete"), material);
        if let Some(data) = secret.data.as_mut() {
            data.remove("ca-key.pem");
        }
        assert_eq!(from_secret(&secret), Err("no ca-key.pem".to_string()));
    }
}
