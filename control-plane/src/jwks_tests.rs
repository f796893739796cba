//! JWKS fetches against a local HTTP(S) server: trust, failures, redirects, the task's
//! publishing, refresh and retry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;
use crate::testing::config_from_yaml;

const JWKS_V1: &str = r#"{"keys":[{"kty":"RSA","kid":"v1","n":"AQAB","e":"AQAB"}]}"#;
const JWKS_V2: &str = r#"{"keys":[{"kty":"RSA","kid":"v2","n":"AQAB","e":"AQAB"}]}"#;

/// What the test server answers on `/jwks` (other paths: 404, `/moved`: 302 to `/jwks`).
#[derive(Clone)]
enum Reply {
    Ok(&'static str),
    Status(u16),
    Hang,
}

struct TestServer {
    address: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    requests: Arc<AtomicUsize>,
    /// The CA that signed the server's certificate (HTTPS servers), as a PEM file.
    ca_file: Option<tempfile::NamedTempFile>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start(https: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("address");
        let reply = Arc::new(Mutex::new(Reply::Ok(JWKS_V1)));
        let requests = Arc::new(AtomicUsize::new(0));
        let (acceptor, ca_file) = if https {
            let (acceptor, ca_pem) = tls_acceptor();
            let mut file = tempfile::NamedTempFile::new().expect("temp file");
            std::io::Write::write_all(&mut file, ca_pem.as_bytes()).expect("writes");
            (Some(acceptor), Some(file))
        } else {
            (None, None)
        };
        let (served_reply, served_requests) = (reply.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (reply, requests, acceptor) = (
                    served_reply.clone(),
                    served_requests.clone(),
                    acceptor.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (reply, requests) = (reply.clone(), requests.clone());
                        async move { answer(&request, &reply, &requests).await }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self {
            address,
            reply,
            requests,
            ca_file,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.ca_file.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.address)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock() = reply;
    }

    fn options(&self) -> JwksOptions {
        JwksOptions {
            ca_file: self.ca_file.as_ref().map(|f| f.path().to_path_buf()),
            system_ca_file: None,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            min_retry_delay: Duration::from_millis(50),
            max_retry_delay: Duration::from_millis(200),
        }
    }
}

async fn answer(
    request: &Request<Incoming>,
    reply: &Mutex<Reply>,
    requests: &AtomicUsize,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    requests.fetch_add(1, Ordering::SeqCst);
    let response = |status: u16, body: &'static str| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("response")
    };
    match request.uri().path() {
        "/moved" => Ok(Response::builder()
            .status(302)
            .header("location", "/jwks")
            .body(Full::new(Bytes::new()))
            .expect("response")),
        "/not-json" => Ok(response(200, "<html>hello</html>")),
        "/no-keys" => Ok(response(200, r#"{"issuer": "x"}"#)),
        "/jwks" => {
            let current = reply.lock().clone();
            match current {
                Reply::Ok(body) => Ok(response(200, body)),
                Reply::Status(status) => Ok(response(status, "error")),
                Reply::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(response(200, "late"))
                }
            }
        }
        _ => Ok(response(404, "not found")),
    }
}

/// A TLS acceptor whose certificate (for 127.0.0.1 and localhost) a fresh CA signed, and
/// that CA's certificate as PEM.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "weft test CA");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf certificate");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .expect("server config");
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem())
}

fn fetcher(options: &JwksOptions) -> Fetcher {
    Fetcher::new(options).expect("fetcher")
}

#[tokio::test]
async fn fetches_over_https_with_the_ca_file_and_follows_redirects() {
    let server = TestServer::start(true).await;
    let fetcher = fetcher(&server.options());
    assert_eq!(
        fetcher.fetch(&server.url("/jwks"), DEFAULT_TIMEOUT).await,
        Ok(JWKS_V1.to_string())
    );
    assert_eq!(
        fetcher.fetch(&server.url("/moved"), DEFAULT_TIMEOUT).await,
        Ok(JWKS_V1.to_string())
    );
    // By name too (the certificate names localhost).
    let by_name = format!("https://localhost:{}/jwks", server.address.port());
    assert_eq!(
        fetcher.fetch(&by_name, DEFAULT_TIMEOUT).await,
        Ok(JWKS_V1.to_string())
    );
}

#[tokio::test]
async fn fetch_failures_say_why() {
    let server = TestServer::start(true).await;
    // Without the CA, the server's certificate is not trusted.
    let untrusting = fetcher(&JwksOptions {
        ca_file: None,
        ..server.options()
    });
    let error = untrusting
        .fetch(&server.url("/jwks"), DEFAULT_TIMEOUT)
        .await
        .expect_err("untrusted");
    assert!(
        error.contains("TLS handshake") && error.contains("certificate"),
        "{error}"
    );

    let fetcher = fetcher(&server.options());
    let fetch = |path: &'static str| {
        let fetcher = fetcher.clone();
        let url = server.url(path);
        async move { fetcher.fetch(&url, Duration::from_millis(500)).await }
    };
    assert_eq!(
        fetch("/missing").await,
        Err("HTTP status 404 Not Found".to_string())
    );
    let not_json = fetch("/not-json").await.expect_err("not JSON");
    assert!(not_json.starts_with("the body is not JSON"), "{not_json}");
    assert_eq!(
        fetch("/no-keys").await,
        Err("the body is not a JWKS (a JSON object with a \"keys\" array)".to_string())
    );
    server.set(Reply::Status(503));
    assert_eq!(
        fetch("/jwks").await,
        Err("HTTP status 503 Service Unavailable".to_string())
    );
    server.set(Reply::Hang);
    assert_eq!(
        fetch("/jwks").await,
        Err("no complete answer within 500ms".to_string())
    );

    // Nothing listens: connection refused, named.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let refused = fetcher
        .fetch(&format!("http://127.0.0.1:{port}/jwks"), DEFAULT_TIMEOUT)
        .await
        .expect_err("refused");
    assert!(
        refused.starts_with(&format!("cannot connect to 127.0.0.1:{port}")),
        "{refused}"
    );
    assert_eq!(
        fetcher
            .fetch("ftp://example.com/jwks", DEFAULT_TIMEOUT)
            .await,
        Err("only http:// and https:// URLs are supported".to_string())
    );
}

#[test]
fn a_bad_ca_file_stops_the_start() {
    let missing = JwksOptions {
        ca_file: Some("/nonexistent/ca.pem".into()),
        system_ca_file: None,
        refresh_interval: DEFAULT_REFRESH_INTERVAL,
        min_retry_delay: Duration::from_secs(1),
        max_retry_delay: Duration::from_secs(1),
    };
    let error = Fetcher::new(&missing).err().expect("missing file");
    assert!(
        error
            .to_string()
            .starts_with("--jwks-ca-file /nonexistent/ca.pem:"),
        "{error}"
    );
    let mut empty = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut empty, b"no PEM here\n").expect("writes");
    let error = Fetcher::new(&JwksOptions {
        ca_file: Some(empty.path().to_path_buf()),
        ..missing.clone()
    })
    .err()
    .expect("no certificate");
    assert!(matches!(error, JwksError::NoCertificate { .. }), "{error}");
    // A missing system bundle is fine.
    assert!(
        Fetcher::new(&JwksOptions {
            ca_file: None,
            system_ca_file: Some("/nonexistent/bundle.crt".into()),
            ..missing
        })
        .is_ok()
    );
}

fn request_authentication(name: &str, uri: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: default}}
spec:
  jwtRules:
  - issuer: "https://issuer.{name}"
    jwksUri: "{uri}"
{extra}
"#
    )
}

#[test]
fn uris_come_from_rules_without_inline_jwks_with_their_longest_timeout() {
    let config = config_from_yaml(&format!(
        "{}---{}---{}",
        request_authentication("a", "https://keys.example/a", "    timeout: 2s"),
        request_authentication("b", "https://keys.example/a", "    timeout: 9s"),
        request_authentication(
            "c",
            "https://keys.example/c",
            "  - issuer: inline\n    jwks: '{\"keys\": []}'\n  - issuer: alias\n    jwks_uri: https://keys.example/alias"
        ),
    ));
    let found: Vec<(String, Duration)> = uris(&config).into_iter().collect();
    assert_eq!(
        found,
        [
            ("https://keys.example/a".to_string(), Duration::from_secs(9)),
            ("https://keys.example/alias".to_string(), DEFAULT_TIMEOUT),
            ("https://keys.example/c".to_string(), DEFAULT_TIMEOUT),
        ]
    );
}

fn snapshot_with(yaml: &str) -> Arc<Snapshot> {
    Arc::new(Snapshot::local(Arc::new(config_from_yaml(yaml))))
}

async fn next_set(rx: &mut watch::Receiver<Arc<JwksSet>>) -> Arc<JwksSet> {
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("a new set within 10s")
        .expect("the task is alive");
    rx.borrow_and_update().clone()
}

#[tokio::test]
async fn the_task_publishes_refreshes_and_retries() {
    let server = TestServer::start(true).await;
    let uri = server.url("/jwks");
    let (snapshots_tx, snapshots) =
        watch::channel(snapshot_with(&request_authentication("a", &uri, "")));
    let options = JwksOptions {
        refresh_interval: Duration::from_millis(300),
        ..server.options()
    };
    let (mut rx, task) = start(snapshots, fetcher(&options), options);

    // The first set: fetched.
    let first = next_set(&mut rx).await;
    assert_eq!(first.get(&uri), Some(&Ok(JWKS_V1.to_string())));

    // Refreshed: the new keys are published.
    server.set(Reply::Ok(JWKS_V2));
    let refreshed = next_set(&mut rx).await;
    assert_eq!(refreshed.get(&uri), Some(&Ok(JWKS_V2.to_string())));

    // A failed refresh keeps the keys; the retry (50 ms backoff) picks up the next keys.
    server.set(Reply::Status(500));
    let before = server.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        server.requests.load(Ordering::SeqCst) >= before + 2,
        "refresh and at least one retry"
    );
    assert_eq!(
        rx.borrow().get(&uri),
        Some(&Ok(JWKS_V2.to_string())),
        "a failed refresh keeps the keys"
    );
    server.set(Reply::Ok(JWKS_V1));
    let recovered = next_set(&mut rx).await;
    assert_eq!(recovered.get(&uri), Some(&Ok(JWKS_V1.to_string())));

    // A new URI that fails is published as a failure, then retried until it works.
    let failing = server.url("/jwks?second");
    server.set(Reply::Status(500));
    snapshots_tx.send_replace(snapshot_with(&format!(
        "{}---{}",
        request_authentication("a", &uri, ""),
        request_authentication("b", &failing, "")
    )));
    let failed = next_set(&mut rx).await;
    assert_eq!(
        failed.get(&failing),
        Some(&Err("HTTP status 500 Internal Server Error".to_string()))
    );
    server.set(Reply::Ok(JWKS_V2));
    let retried = loop {
        let set = next_set(&mut rx).await;
        if matches!(set.get(&failing), Some(Ok(_))) {
            break set;
        }
    };
    assert_eq!(retried.get(&failing), Some(&Ok(JWKS_V2.to_string())));

    // A URI no longer named is dropped.
    snapshots_tx.send_replace(snapshot_with(&request_authentication("b", &failing, "")));
    let dropped = loop {
        let set = next_set(&mut rx).await;
        if set.get(&uri).is_none() {
            break set;
        }
    };
    assert!(dropped.get(&failing).is_some());
    task.abort();
}

#[tokio::test]
async fn without_uris_the_first_set_is_published_at_once() {
    let (_snapshots_tx, snapshots) = watch::channel(snapshot_with(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: default}\nspec: {hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}\n",
    ));
    let options = JwksOptions {
        ca_file: None,
        system_ca_file: None,
        refresh_interval: DEFAULT_REFRESH_INTERVAL,
        min_retry_delay: Duration::from_secs(1),
        max_retry_delay: Duration::from_secs(1),
    };
    let (mut rx, task) = start(snapshots, fetcher(&options), options);
    let first = next_set(&mut rx).await;
    assert_eq!(first.iter().count(), 0);
    task.abort();
}
