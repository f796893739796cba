//! Who is calling the CA: a bearer token in, the SPIFFE identity it proves out. Kubernetes
//! ServiceAccount tokens are checked with a TokenReview (audience included) and the
//! ServiceAccount must still exist; local mode uses bootstrap token files.

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use weft_identity::SpiffeId;

/// Why a caller was not authenticated. Sent back to the caller and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send the workload's token as `authorization: Bearer <token>`")]
    NoToken,
    #[error("the token is not valid: {0}")]
    Rejected(String),
    #[error("the token's audiences {got:?} do not include {want:?}")]
    Audience { got: Vec<String>, want: String },
    #[error(
        "the token is for {0:?}, not a ServiceAccount (system:serviceaccount:<namespace>:<name>)"
    )]
    NotServiceAccount(String),
    #[error("ServiceAccount {namespace}/{name} does not exist (deleted?)")]
    NoServiceAccount { namespace: String, name: String },
    #[error("cannot check the token: {0}")]
    Unavailable(String),
    #[error("local mode: certificates are issued only with --ca-token-dir (bootstrap tokens)")]
    NoTokenDir,
    #[error("no bootstrap token in {0} matches")]
    UnknownToken(String),
    #[error("{0}")]
    Identity(String),
}

/// How callers are authenticated.
#[derive(Clone)]
pub enum Authenticator {
    /// Kubernetes: TokenReview with `audience`, then the ServiceAccount must exist.
    Kube { client: Client, audience: String },
    /// Local mode: `dir/<namespace>/<service account>` holds the token of that identity.
    LocalTokens { dir: Option<PathBuf> },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kube { audience, .. } => {
                write!(f, "Kubernetes TokenReview (audience {audience:?})")
            }
            Self::LocalTokens { dir } => write!(f, "bootstrap tokens in {dir:?}"),
        }
    }
}

impl Authenticator {
    /// The identity `token` proves in `trust_domain`.
    pub async fn authenticate(
        &self,
        token: &str,
        trust_domain: &str,
    ) -> Result<SpiffeId, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::NoToken);
        }
        let (namespace, name) = match self {
            Self::Kube { client, audience } => review(client, audience, token).await?,
            Self::LocalTokens { dir } => {
                let dir = dir.as_ref().ok_or(AuthError::NoTokenDir)?;
                let dir = dir.clone();
                let token = token.to_string();
                tokio::task::spawn_blocking(move || local_token(&dir, &token))
                    .await
                    .map_err(|err| AuthError::Unavailable(err.to_string()))??
            }
        };
        SpiffeId::new(trust_domain, &namespace, &name)
            .map_err(|err| AuthError::Identity(err.to_string()))
    }
}

async fn review(
    client: &Client,
    audience: &str,
    token: &str,
) -> Result<(String, String), AuthError> {
    let request = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: Some(vec![audience.to_string()]),
        },
        ..TokenReview::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &request)
        .await
        .map_err(|err| AuthError::Unavailable(format!("TokenReview failed: {err}")))?;
    let status = reviewed.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        let reason = status
            .error
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "the API server did not authenticate it".to_string());
        return Err(AuthError::Rejected(reason));
    }
    let audiences = status.audiences.unwrap_or_default();
    if !audiences.iter().any(|a| a == audience) {
        return Err(AuthError::Audience {
            got: audiences,
            want: audience.to_string(),
        });
    }
    let username = status.user.and_then(|u| u.username).unwrap_or_default();
    let (namespace, name) = service_account_of(&username)?;
    // A token can outlive its ServiceAccount (legacy tokens, caches): the account must exist.
    match Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
        .get_opt(&name)
        .await
    {
        Ok(Some(_)) => Ok((namespace, name)),
        Ok(None) => Err(AuthError::NoServiceAccount { namespace, name }),
        Err(err) => Err(AuthError::Unavailable(format!(
            "cannot read ServiceAccount {namespace}/{name}: {err}"
        ))),
    }
}

/// `system:serviceaccount:<namespace>:<name>` → (namespace, name).
fn service_account_of(username: &str) -> Result<(String, String), AuthError> {
    username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'))
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .ok_or_else(|| AuthError::NotServiceAccount(username.to_string()))
}

/// Finds the `<namespace>/<service account>` file whose content is `token`. The directory is
/// read on every call (a handful of small files), so adding or deleting a token file takes
/// effect at once.
fn local_token(dir: &std::path::Path, token: &str) -> Result<(String, String), AuthError> {
    let unavailable =
        |err: std::io::Error| AuthError::Unavailable(format!("{}: {err}", dir.display()));
    let mut found = None;
    for namespace in std::fs::read_dir(dir).map_err(unavailable)? {
        let namespace = namespace.map_err(unavailable)?;
        if !namespace.file_type().map_err(unavailable)?.is_dir() {
            continue;
        }
        for account in std::fs::read_dir(namespace.path()).map_err(unavailable)? {
            let account = account.map_err(unavailable)?;
            let Ok(content) = std::fs::read_to_string(account.path()) else {
                continue;
            };
            // Every file is compared (no early return), in constant time per file.
            if same(content.trim().as_bytes(), token.as_bytes()) {
                found = Some((
                    namespace.file_name().to_string_lossy().into_owned(),
                    account.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
    }
    found.ok_or_else(|| AuthError::UnknownToken(dir.display().to_string()))
}

/// Constant-time equality of two byte strings (of the same length; a different length is
/// not a secret). Written here: two lines, and no crate of the workspace offers it.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_of_service_accounts() {
        assert_eq!(
            service_account_of("system:serviceaccount:default:reviews"),
            Ok(("default".to_string(), "reviews".to_string()))
        );
        for bad in [
            "alice",
            "system:serviceaccount:default",
            "system:serviceaccount::x",
            "system:node:n1",
        ] {
            assert!(service_account_of(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn local_tokens_prove_their_file_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("default")).expect("mkdir");
        std::fs::write(dir.path().join("default/reviews"), "s3cret-reviews\n").expect("write");
        std::fs::write(dir.path().join("default/ratings"), "s3cret-ratings").expect("write");
        let auth = Authenticator::LocalTokens {
            dir: Some(dir.path().to_path_buf()),
        };
        let id = auth
            .authenticate("s3cret-reviews", "cluster.local")
            .await
            .expect("valid");
        assert_eq!(id.uri(), "spiffe://cluster.local/ns/default/sa/reviews");
        assert!(matches!(
            auth.authenticate("nope", "cluster.local").await,
            Err(AuthError::UnknownToken(_))
        ));
        assert_eq!(
            auth.authenticate("  ", "cluster.local").await,
            Err(AuthError::NoToken)
        );
        std::fs::remove_file(dir.path().join("default/reviews")).expect("revoke");
        assert!(
            auth.authenticate("s3cret-reviews", "cluster.local")
                .await
                .is_err()
        );
        let none = Authenticator::LocalTokens { dir: None };
        assert_eq!(
            none.authenticate("x", "td").await,
            Err(AuthError::NoTokenDir)
        );
    }
}
