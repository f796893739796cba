//! AuthorizationPolicy and RequestAuthentication through real sidecars with mutual TLS: the
//! client's SPIFFE identity (from its certificate) and the request's JWT principal (a key set
//! the controller fetched from a local HTTPS `jwksUri`) decide, as Istio documents.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use weft_e2e::{Mesh, MeshOptions, Net, Reply, eventually};

const ISSUER: &str = "https://issuer.weft.test";
const SIGNING_KEY: &str = include_str!("../../proxy/tests/data/jwt/ec256.pem");
const OTHER_KEY: &str = include_str!("../../proxy/tests/data/jwt/ec384.pem");

fn key() -> EncodingKey {
    EncodingKey::from_ec_pem(SIGNING_KEY.as_bytes()).expect("test key")
}

fn jwks() -> String {
    let mut jwk = Jwk::from_encoding_key(&key(), Algorithm::ES256).expect("JWK");
    jwk.common.key_id = Some("test".into());
    serde_json::to_string(&JwkSet { keys: vec![jwk] }).expect("JSON")
}

/// A token from `issuer` for `aud`, valid from `from` seconds (relative to now) for an hour.
fn token(issuer: &str, aud: &str, from: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims = serde_json::json!({
        "iss": issuer, "sub": "alice", "aud": aud,
        "iat": now + from, "nbf": now + from, "exp": now + from + 3600,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("test".into());
    jsonwebtoken::encode(&header, &claims, &key()).expect("signed")
}

/// Serves the key set over HTTPS at `addr` with a certificate for its IP; returns the PEM of
/// that certificate (the controller's `--jwks-ca-file`).
async fn jwks_server(addr: SocketAddr) -> String {
    let cert = rcgen::generate_simple_self_signed(vec![addr.ip().to_string()]).expect("cert");
    let pem = cert.cert.pem();
    let chain = vec![cert.cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the JWKS server");
    let body = jwks();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    pem
}

fn policies(jwks_uri: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: reviews-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: {jwks_uri}
    audiences: [weft]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews-allow, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/client]
        requestPrincipals: [\"{ISSUER}/*\"]
    to:
    - operation: {{methods: [GET], paths: [/api/*]}}
  - to:
    - operation: {{paths: [/public]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: block-header, namespace: istio-system}}
spec:
  action: DENY
  rules:
  - when:
    - key: request.headers[x-block]
      values: [\"yes\"]
"
    )
}

/// One row: what it shows, path, token, extra headers, expected status.
type Case<'a> = (
    &'a str,
    &'a str,
    Option<String>,
    &'a [(&'a str, &'a str)],
    u16,
);

async fn get(mesh: &Mesh, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    mesh.get(path, &headers).await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_and_tokens_decide_as_istio_does() {
    let net = Net::new();
    let jwks_addr = SocketAddr::new(net.ip(50), 8443);
    let ca_pem = jwks_server(jwks_addr).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file: PathBuf = dir.path().join("jwks-ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write the JWKS CA");
    let mesh = Mesh::start_with(
        &["v1"],
        &[(
            "policies.yaml",
            &policies(&format!("https://{jwks_addr}/jwks.json")),
        )],
        &MeshOptions {
            net: Some(net),
            identity: true,
            controller: vec!["--jwks-ca-file".into(), ca_file.display().to_string()],
            ..MeshOptions::default()
        },
    )
    .await;
    eventually(Duration::from_secs(20), "the policies applied", || async {
        (get(&mesh, "/public", None, &[]).await.status == 200).then_some(())
    })
    .await;

    let valid = token(ISSUER, "weft", 0);
    let cases: [Case<'_>; 9] = [
        ("a path any caller may use", "/public", None, &[], 200),
        (
            "no token where a request principal is required",
            "/api/reviews",
            None,
            &[],
            403,
        ),
        (
            "the client's SPIFFE identity and a valid token",
            "/api/reviews",
            Some(valid.clone()),
            &[],
            200,
        ),
        (
            "a valid token on a path no rule allows",
            "/admin",
            Some(valid.clone()),
            &[],
            403,
        ),
        (
            "an expired token",
            "/api/reviews",
            Some(token(ISSUER, "weft", -7200)),
            &[],
            401,
        ),
        (
            "a token of another issuer",
            "/api/reviews",
            Some(token("https://evil.test", "weft", 0)),
            &[],
            401,
        ),
        (
            "a token for another audience",
            "/api/reviews",
            Some(token(ISSUER, "other", 0)),
            &[],
            401,
        ),
        (
            "a tampered signature",
            "/api/reviews",
            Some(tamper(&valid)),
            &[],
            401,
        ),
        (
            "the mesh-wide DENY beats the ALLOW",
            "/public",
            None,
            &[("x-block", "yes")],
            403,
        ),
    ];
    for (what, path, token, headers, want) in cases {
        let reply = get(&mesh, path, token.as_deref(), headers).await;
        assert_eq!(
            reply.status.as_u16(),
            want,
            "{what}: {} {}",
            reply.status,
            reply.body
        );
        match want {
            403 => assert_eq!(reply.body.trim(), "RBAC: access denied", "{what}"),
            401 => assert_eq!(reply.body.trim(), "Jwt verification fails", "{what}"),
            _ => assert!(reply.version.is_some(), "{what}: the app answered"),
        }
    }
    // A token signed by a key outside the key set is no better than none.
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some("test".into());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let forged = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"iss": ISSUER, "sub": "mallory", "aud": "weft", "exp": now + 600}),
        &EncodingKey::from_ec_pem(OTHER_KEY.as_bytes()).expect("key"),
    )
    .expect("signed");
    assert_eq!(
        get(&mesh, "/api/reviews", Some(&forged), &[])
            .await
            .status
            .as_u16(),
        401
    );

    // The principal check is real: the same request from a workload without the client's
    // identity (straight to the inbound port, plaintext, PERMISSIVE by default) is denied.
    let direct = mesh
        .http
        .request(
            SocketAddr::new(mesh.sidecars[0].ip, 15006),
            "GET",
            "reviews:9080",
            "/api/reviews",
            &[("authorization", &format!("Bearer {valid}"))],
        )
        .await
        .expect("request");
    assert_eq!(
        direct.status.as_u16(),
        403,
        "no mTLS principal: {}",
        direct.body
    );
}

fn tamper(token: &str) -> String {
    let (rest, signature) = token.rsplit_once('.').expect("three parts");
    let mut bytes = signature.as_bytes().to_vec();
    bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
    format!("{rest}.{}", String::from_utf8(bytes).expect("ascii"))
}
