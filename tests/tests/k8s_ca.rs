//! The CA on a real kube-apiserver: ServiceAccount tokens checked by TokenReview (audience
//! included), refusals with their reasons, the root kept in a Secret across restarts, and the
//! trust bundle published as `istio-ca-root-cert` in every namespace.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Request;
use weft_e2e::k8s::{KubeCluster, KubeClusterOptions};
use weft_e2e::{Net, Process, eventually, wait_ok};
use weft_identity::ca_api::{IstioCertificateRequest, create_certificate};
use weft_identity::{CertInfo, SpiffeId, TrustBundle, WorkloadKey};

const SERVER_NAME: &str = "istiod.weft-system.svc";

struct Ca {
    process: Process,
    secure: SocketAddr,
}

async fn start_controller(cluster: &KubeCluster, net: Net, log: &str) -> Ca {
    let xds = SocketAddr::new(net.ip(1), 15010);
    let secure = SocketAddr::new(net.ip(1), 15012);
    let debug = SocketAddr::new(net.ip(1), 15014);
    let webhook = SocketAddr::new(net.ip(1), 15017);
    let mut process = Process::spawn(
        log,
        Command::new(&weft_e2e::bins().controller)
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["--namespace", "weft-system"])
            .args(["--xds-address", &xds.to_string()])
            .args(["--secure-xds-address", &secure.to_string()])
            .args(["--debug-address", &debug.to_string()])
            .args(["--webhook-address", &webhook.to_string()]),
        cluster.dir.path(),
    );
    wait_ok(&format!("http://{debug}/ready"), &mut process).await;
    Ca { process, secure }
}

/// The trust bundle of the `istio-ca-root-cert` ConfigMap of `namespace`, once it exists.
async fn published_bundle(cluster: &KubeCluster, namespace: &str) -> String {
    eventually(
        Duration::from_secs(30),
        &format!("istio-ca-root-cert in {namespace}"),
        || async {
            let out = cluster.kubectl(&[
                "get",
                "configmap",
                "istio-ca-root-cert",
                "-n",
                namespace,
                "-o",
                "jsonpath={.data.root-cert\\.pem}",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.contains("BEGIN CERTIFICATE")).then_some(text)
        },
    )
    .await
}

/// Asks the CA for `namespace/sa` with `token`; the leaf's SANs or the refusal.
async fn ask(
    ca: SocketAddr,
    bundle: &TrustBundle,
    token: &str,
    namespace: &str,
    sa: &str,
) -> Result<CertInfo, tonic::Status> {
    let id = SpiffeId::new("cluster.local", namespace, sa).expect("id");
    let key = WorkloadKey::generate().expect("key");
    let tls = weft_proxy::identity::channel::client_config(bundle, None).expect("tls");
    let channel =
        weft_proxy::identity::channel::connect(&format!("https://{ca}"), SERVER_NAME, tls)
            .await
            .expect("TLS to the CA");
    let mut request = Request::new(IstioCertificateRequest {
        csr: key.csr_pem(&id).expect("csr"),
        validity_duration: 3600,
        metadata: None,
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let chain = create_certificate(channel, request)
        .await?
        .into_inner()
        .cert_chain;
    let der = weft_identity::cert::certs_from_pem("leaf", chain[0].as_bytes()).expect("pem");
    Ok(CertInfo::parse("leaf", &der[0]).expect("cert"))
}

/// A token for `namespace/sa` signed with the cluster's service-account key, already expired:
/// the API server itself must refuse it.
fn expired_token(dir: &Path, namespace: &str, sa: &str, uid: &str) -> String {
    let key = std::fs::read(dir.join("sa.key")).expect("the cluster's signing key");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{namespace}:{sa}"),
        "aud": ["istio-ca"],
        "iat": now - 7200,
        "nbf": now - 7200,
        "exp": now - 3600,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": sa, "uid": uid}},
    });
    // tests/k8s/certs.sh makes an ECDSA P-256 signing key.
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&key).expect("EC key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
    .expect("signed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_reviewed_and_the_root_survives_restarts() {
    let cluster = KubeCluster::start(KubeClusterOptions::default()).await;
    for ns in ["weft-system", "mesh"] {
        cluster.kubectl_ok(&["create", "namespace", ns]);
    }
    for sa in ["reviews", "ratings"] {
        cluster.kubectl_ok(&["create", "serviceaccount", sa, "-n", "mesh"]);
    }
    let net = Net::new();
    let mut ca = start_controller(&cluster, net, "weft-controller").await;

    // The root is kept in the controller's namespace and published everywhere.
    cluster.kubectl_ok(&["get", "secret", "istio-ca-secret", "-n", "weft-system"]);
    let pem = published_bundle(&cluster, "mesh").await;
    assert_eq!(published_bundle(&cluster, "default").await, pem);
    cluster.kubectl_ok(&["create", "namespace", "late"]);
    assert_eq!(
        published_bundle(&cluster, "late").await,
        pem,
        "a new namespace gets the bundle"
    );
    let bundle = TrustBundle::from_pem("istio-ca-root-cert", pem.as_bytes()).expect("bundle");

    // A valid token gets exactly its identity.
    let audience = [
        "create",
        "token",
        "reviews",
        "-n",
        "mesh",
        "--audience",
        "istio-ca",
    ];
    let token = cluster.kubectl_ok(&audience).trim().to_string();
    let leaf = ask(ca.secure, &bundle, &token, "mesh", "reviews")
        .await
        .expect("issued");
    assert_eq!(leaf.uris, ["spiffe://cluster.local/ns/mesh/sa/reviews"]);

    // Refusals, each with its reason.
    let other_sa = ask(ca.secure, &bundle, &token, "mesh", "ratings")
        .await
        .expect_err("other SA");
    assert_eq!(
        other_sa.code(),
        tonic::Code::PermissionDenied,
        "{other_sa:?}"
    );
    assert!(
        other_sa
            .message()
            .contains("authenticated as spiffe://cluster.local/ns/mesh/sa/reviews"),
        "{other_sa:?}"
    );

    let wrong_audience = cluster
        .kubectl_ok(&[
            "create",
            "token",
            "reviews",
            "-n",
            "mesh",
            "--audience",
            "someone-else",
        ])
        .trim()
        .to_string();
    let refused = ask(ca.secure, &bundle, &wrong_audience, "mesh", "reviews")
        .await
        .expect_err("audience");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("audience"), "{refused:?}");

    let uid = cluster.kubectl_ok(&[
        "get",
        "serviceaccount",
        "reviews",
        "-n",
        "mesh",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let expired = expired_token(cluster.dir.path(), "mesh", "reviews", uid.trim());
    let refused = ask(ca.secure, &bundle, &expired, "mesh", "reviews")
        .await
        .expect_err("expired");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("expired"), "{refused:?}");

    let ratings = cluster
        .kubectl_ok(&[
            "create",
            "token",
            "ratings",
            "-n",
            "mesh",
            "--audience",
            "istio-ca",
        ])
        .trim()
        .to_string();
    ask(ca.secure, &bundle, &ratings, "mesh", "ratings")
        .await
        .expect("ratings exists");
    cluster.kubectl_ok(&["delete", "serviceaccount", "ratings", "-n", "mesh"]);
    let refused = eventually(
        Duration::from_secs(20),
        "the deleted account refused",
        || async {
            ask(ca.secure, &bundle, &ratings, "mesh", "ratings")
                .await
                .err()
        },
    )
    .await;
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let log = ca.process.log();
    assert!(
        log.contains("refused a certificate request"),
        "refusals are logged"
    );

    // A restarted controller keeps its root: old bundles still verify new certificates.
    ca.process.terminate();
    ca.process.wait_exit(Duration::from_secs(10)).await;
    let restarted = start_controller(&cluster, net, "weft-controller-restarted").await;
    let leaf = ask(restarted.secure, &bundle, &token, "mesh", "reviews")
        .await
        .expect("issued after restart");
    assert_eq!(leaf.uris, ["spiffe://cluster.local/ns/mesh/sa/reviews"]);
    assert_eq!(published_bundle(&cluster, "mesh").await, pem);
}
