//! The status port against tiny in-process apps on 127.0.0.1 (the pod IP of these tests):
//! parsing ISTIO_KUBE_APP_PROBERS, each probe kind, failures, timeouts and routing.

use std::future::Future;

use http_body_util::combinators::BoxBody;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use super::*;

const POD_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Serves `handler` on 127.0.0.1 (HTTP/1.1, or h2c for `h2`) until the test ends.
async fn serve_app<F, Fut>(h2: bool, handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<BoxBody<Bytes, Infallible>>> + Send + 'static,
{
    let listener = TcpListener::bind((POD_IP, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let io = TokioIo::new(stream);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    addr
}

fn answer(status: u16) -> Response<BoxBody<Bytes, Infallible>> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    response
}

/// The app: `/ok` 200, `/fail` 500, `/redirect` 302, `/slow` never answers, `/headers` 200
/// only with the headers the probes below send (418 otherwise).
async fn http_app() -> SocketAddr {
    serve_app(false, |req: Request<Incoming>| async move {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        match req.uri().path() {
            "/ok" => answer(200),
            "/fail" => answer(500),
            "/redirect" => {
                let mut response = answer(302);
                response.headers_mut().insert(
                    http::header::LOCATION,
                    HeaderValue::from_static("http://elsewhere.example/"),
                );
                response
            }
            "/slow" => std::future::pending().await,
            "/headers"
                if header("x-probe") == "1"
                    && header("host") == "shop"
                    && header("user-agent") == "kube-probe/1.34" =>
            {
                answer(200)
            }
            "/default-host" if header("host").starts_with("127.0.0.1:") => answer(200),
            _ => answer(418),
        }
    })
    .await
}

fn server(json: &str) -> StatusServer {
    StatusServer::new(json.parse().expect("probers"), POD_IP)
}

fn get(path: &str) -> Request<()> {
    let mut request = Request::new(());
    *request.uri_mut() = http::Uri::try_from(path).expect("path");
    request
        .headers_mut()
        .insert(USER_AGENT, HeaderValue::from_static("kube-probe/1.34"));
    request
}

async fn body(response: Response<Full<Bytes>>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind((POD_IP, 0)).await.expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn probers_parse_with_kubernetes_defaults() {
    let probers: AppProbers = r#"{
        "/app-health/web/livez": {"httpGet": {"path": "healthz?full=1", "port": 8080,
            "scheme": "HTTPS", "host": "web.local",
            "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "timeoutSeconds": 3},
        "/app-health/web/readyz": {"tcpSocket": {"port": "8081"}},
        "/app-health/web/startupz": {"grpc": {"port": 9090, "service": "shop"}, "timeoutSeconds": 0}
    }"#
    .parse()
    .expect("valid");
    let probe = |path: &str| probers.get(path).cloned().expect(path);
    assert_eq!(
        probe("/app-health/web/livez"),
        AppProbe {
            prober: Prober::Http {
                port: 8080,
                path: PathAndQuery::from_static("/healthz?full=1"),
                scheme: Scheme::Https,
                host: Some("web.local".into()),
                headers: vec![(
                    HeaderName::from_static("x-probe"),
                    HeaderValue::from_static("1")
                )],
            },
            timeout: Duration::from_secs(3),
        }
    );
    assert_eq!(
        probe("/app-health/web/readyz"),
        AppProbe {
            prober: Prober::Tcp {
                port: 8081,
                host: None
            },
            timeout: DEFAULT_TIMEOUT,
        }
    );
    assert_eq!(
        probe("/app-health/web/startupz"),
        AppProbe {
            prober: Prober::Grpc {
                port: 9090,
                service: "shop".into()
            },
            timeout: DEFAULT_TIMEOUT,
        }
    );
    assert_eq!(AppProbers::from_flag(None).expect("none").len(), 0);
    assert!(AppProbers::from_flag(Some(" ")).expect("empty").is_empty());
}

#[test]
fn bad_probers_name_the_key_and_field() {
    let key = "ISTIO_KUBE_APP_PROBERS[\"/app-health/a/livez\"]";
    let cases = [
        ("{", "ISTIO_KUBE_APP_PROBERS is not valid JSON: EOF while parsing an object at line 1 column 1".to_string()),
        ("[]", "ISTIO_KUBE_APP_PROBERS must be a JSON object of probes by path".to_string()),
        (
            r#"{"/healthz": {"tcpSocket": {"port": 1}}}"#,
            "ISTIO_KUBE_APP_PROBERS[\"/healthz\"]: the key must be /app-health/<container>/livez, readyz or startupz".to_string(),
        ),
        (
            r#"{"/app-health/a/livez": {"tcpSocket": {"port": 1}, "grpc": {"port": 2}}}"#,
            format!("{key}: a probe needs exactly one of httpGet, tcpSocket and grpc"),
        ),
        (
            r#"{"/app-health/a/livez": {"exec": {"command": ["true"]}}}"#,
            format!("{key}: a probe needs exactly one of httpGet, tcpSocket and grpc"),
        ),
        (
            r#"{"/app-health/a/livez": {"httpGet": {"port": "http"}}}"#,
            format!("{key}.httpGet.port: \"http\" is a port name: the injector resolves names to numbers"),
        ),
        (
            r#"{"/app-health/a/livez": {"tcpSocket": {"port": 70000}}}"#,
            format!("{key}.tcpSocket.port: not a port (1-65535)"),
        ),
        (
            r#"{"/app-health/a/livez": {"grpc": {}}}"#,
            format!("{key}.grpc.port: missing"),
        ),
        (
            r#"{"/app-health/a/livez": {"grpc": {"port": 1}, "timeoutSeconds": -1}}"#,
            format!("{key}.timeoutSeconds: -1 is not a whole number of seconds"),
        ),
        (
            r#"{"/app-health/a/livez": {"httpGet": {"port": 1, "scheme": "FTP"}}}"#,
            format!("{key}.httpGet.scheme: \"FTP\" is not HTTP or HTTPS"),
        ),
        (
            r#"{"/app-health/a/livez": {"httpGet": {"port": 1, "httpHeaders": [{"name": "a b", "value": "x"}]}}}"#,
            format!("{key}.httpGet.httpHeaders[0].name: \"a b\" is not a header name"),
        ),
    ];
    for (json, message) in cases {
        let err = json.parse::<AppProbers>().expect_err(json);
        assert_eq!(err.to_string(), message, "{json}");
    }
}

#[tokio::test]
async fn http_probes_follow_kubelets_rule() {
    let app = http_app().await;
    let port = app.port();
    let closed = closed_port().await;
    let server = server(&format!(
        r#"{{
        "/app-health/a/livez": {{"httpGet": {{"path": "/ok", "port": {port}}}}},
        "/app-health/a/readyz": {{"httpGet": {{"path": "/fail", "port": {port}}}}},
        "/app-health/a/startupz": {{"httpGet": {{"path": "/redirect", "port": {port}}}}},
        "/app-health/b/livez": {{"httpGet": {{"path": "/headers", "port": {port},
            "httpHeaders": [{{"name": "X-Probe", "value": "1"}}, {{"name": "Host", "value": "shop"}}]}}}},
        "/app-health/b/readyz": {{"httpGet": {{"path": "/default-host", "port": {port}}}}},
        "/app-health/b/startupz": {{"httpGet": {{"path": "/ok", "port": {closed}}}}}
    }}"#
    ));
    let cases = [
        ("/app-health/a/livez", 200, "the app answered 200 OK"),
        (
            "/app-health/a/readyz",
            500,
            "the app answered 500 Internal Server Error to GET /fail",
        ),
        // Kubelet's rule: a redirect is a success, and it is not followed.
        ("/app-health/a/startupz", 200, "the app answered 302 Found"),
        // httpHeaders are sent (Host among them) with kubelet's User-Agent.
        ("/app-health/b/livez", 200, "the app answered 200 OK"),
        ("/app-health/b/readyz", 200, "the app answered 200 OK"),
        ("/app-health/b/startupz", 503, "connect to 127.0.0.1:"),
    ];
    for (path, status, reason) in cases {
        let response = server.respond(&get(path)).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        let text = body(response).await;
        assert!(text.starts_with(reason), "{path}: {text}");
    }
}

#[tokio::test]
async fn a_slow_app_fails_at_the_probe_timeout() {
    let port = http_app().await.port();
    let json =
        format!(r#"{{"/app-health/a/livez": {{"httpGet": {{"path": "/slow", "port": {port}}}}}}}"#);
    let mut probers: AppProbers = json.parse().expect("probers");
    // A short timeout keeps the test quick; the answer says which timeout passed.
    for probe in probers.0.values_mut() {
        probe.timeout = Duration::from_millis(200);
    }
    let server = StatusServer::new(probers, POD_IP);
    let response = server.respond(&get("/app-health/a/livez")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body(response).await, "no answer within 200ms\n");
}

#[tokio::test]
async fn https_probes_accept_any_certificate() {
    // A certificate for another name, from a CA nobody trusts: kubelet would accept it too.
    let ca = weft_identity::CertificateAuthority::new(
        weft_identity::CaMaterial::self_signed("cluster.local", Duration::from_secs(3600))
            .expect("CA"),
    )
    .expect("CA");
    let (chain, key) = ca
        .issue_server_cert(&["app.example".into()], Duration::from_secs(3600))
        .expect("certificate");
    let chain = weft_identity::cert::certs_from_pem("chain", chain.as_bytes()).expect("chain");
    let key = weft_identity::cert::key_from_pem("key", key.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(weft_identity::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((POD_IP, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|req: Request<Incoming>| async move {
                    let status = if req.uri().path() == "/secure" {
                        204
                    } else {
                        404
                    };
                    Ok::<_, Infallible>(answer(status))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    let server = server(&format!(
        r#"{{"/app-health/a/readyz": {{"httpGet": {{"path": "/secure", "port": {port}, "scheme": "HTTPS"}}}},
            "/app-health/a/livez": {{"httpGet": {{"path": "/other", "port": {port}, "scheme": "HTTPS"}}}}}}"#
    ));
    let response = server.respond(&get("/app-health/a/readyz")).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        body(response).await
    );
    let response = server.respond(&get("/app-health/a/livez")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tcp_probes_connect_from_the_capture_exempt_source() {
    let listener = TcpListener::bind((POD_IP, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let closed = closed_port().await;
    let server = server(&format!(
        r#"{{"/app-health/a/livez": {{"tcpSocket": {{"port": {port}}}, "timeoutSeconds": 5}},
            "/app-health/a/readyz": {{"tcpSocket": {{"port": {closed}}}}}}}"#
    ))
    .captured();
    let accepted = tokio::spawn(async move { listener.accept().await.map(|(_, peer)| peer) });
    let response = server.respond(&get("/app-health/a/livez")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let peer = accepted.await.expect("task").expect("accepted");
    // The capture rules let 127.0.0.6 through: the proxy's probe is not redirected to itself.
    assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6)));
    let response = server.respond(&get("/app-health/a/readyz")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(body(response).await.contains("failed"));
}

/// A gRPC health service: `""` SERVING, `"down"` NOT_SERVING, anything else NOT_FOUND (as
/// grpc-go's health server answers an unknown service).
async fn grpc_app() -> SocketAddr {
    serve_app(true, |req: Request<Incoming>| async move {
        let path_ok = req.uri().path() == "/grpc.health.v1.Health/Check";
        let Ok(body) = req.into_body().collect().await else {
            return answer(400);
        };
        let data = body.to_bytes();
        let service = data
            .get(5..)
            .and_then(|m| HealthCheckRequest::decode(m).ok())
            .map(|r| r.service);
        let status = match service.as_deref() {
            Some("") if path_ok => SERVING,
            Some("down") if path_ok => 2,
            _ => {
                let mut response = answer(200);
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                headers.insert("grpc-status", HeaderValue::from_static("5"));
                headers.insert("grpc-message", HeaderValue::from_static("unknown service"));
                return response;
            }
        };
        let message = HealthCheckResponse { status }.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&u32::try_from(message.len()).expect("len").to_be_bytes());
        frame.extend_from_slice(&message);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let body = Full::new(Bytes::from(frame))
            .with_trailers(async move { Some(Ok(trailers)) })
            .boxed();
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        response
    })
    .await
}

#[tokio::test]
async fn grpc_probes_ask_the_health_service() {
    let port = grpc_app().await.port();
    let http_port = http_app().await.port();
    let closed = closed_port().await;
    let server = server(&format!(
        r#"{{"/app-health/a/livez": {{"grpc": {{"port": {port}}}}},
            "/app-health/a/readyz": {{"grpc": {{"port": {port}, "service": "down"}}}},
            "/app-health/a/startupz": {{"grpc": {{"port": {port}, "service": "cart"}}}},
            "/app-health/b/livez": {{"grpc": {{"port": {closed}}}}},
            "/app-health/b/readyz": {{"grpc": {{"port": {http_port}}}}}}}"#
    ));
    let cases = [
        ("/app-health/a/livez", 200, "SERVING"),
        ("/app-health/a/readyz", 503, "\"down\" is NOT_SERVING"),
        (
            "/app-health/a/startupz",
            503,
            "grpc-status 5 unknown service",
        ),
        ("/app-health/b/livez", 503, "failed"),
        // An HTTP/1 app does not speak h2c: a failure, not a hang.
        ("/app-health/b/readyz", 503, "127.0.0.1"),
    ];
    for (path, status, reason) in cases {
        let response = server.respond(&get(path)).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        let text = body(response).await;
        assert!(text.contains(reason), "{path}: {text}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_readiness_is_the_health_ports() {
    let server = server("{}");
    let response = server.respond(&get("/app-health/nope/livez")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        body(response).await,
        "no app probe at /app-health/nope/livez\n"
    );
    // Without readiness (tests only) /healthz/ready is unknown too.
    let response = server.respond(&get("/healthz/ready")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let mut post = get("/healthz/ready");
    *post.method_mut() = http::Method::POST;
    assert_eq!(
        server.respond(&post).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );

    let (_tx, rx) = watch::channel(Arc::new(ProxyConfig::default()));
    let ctl = admin::Control::default();
    let expected = admin::readiness(&ProxyConfig::default(), &ctl);
    let (status, expected) = (expected.status(), body(expected).await);
    let server = StatusServer::new(AppProbers::default(), POD_IP).with_readiness(rx, ctl);
    let response = server.respond(&get("/healthz/ready")).await;
    assert_eq!(response.status(), status);
    assert_eq!(body(response).await, expected);
}

#[tokio::test]
async fn quitquitquit_stops_the_proxy_when_posted_from_inside_the_pod() {
    let (_tx, rx) = watch::channel(Arc::new(ProxyConfig::default()));
    let ctl = admin::Control::default();
    let quit = ctl.quit.clone();
    let server = StatusServer::new(AppProbers::default(), POD_IP).with_readiness(rx, ctl);
    let mut post = get("/quitquitquit");
    *post.method_mut() = http::Method::POST;
    let response = server
        .respond_from(&get("/quitquitquit"), "127.0.0.1".parse().unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // From another pod (or kubelet): refused.
    let response = server
        .respond_from(&post, "198.18.0.7".parse().unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!quit.is_cancelled());
    let response = server.respond_from(&post, "::1".parse().unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(quit.is_cancelled());
    // Probes still go through respond_from.
    let response = server
        .respond_from(&get("/app-health/x/livez"), POD_IP)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_status_port_answers_over_http() {
    let app = http_app().await.port();
    let listener = TcpListener::bind((POD_IP, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = weft_net::BoundedListener::new(
        listener,
        "status",
        weft_net::ListenerLimits::new(8, Some(Duration::from_secs(10))),
        None,
    );
    let json =
        format!(r#"{{"/app-health/a/livez": {{"httpGet": {{"path": "/fail", "port": {app}}}}}}}"#);
    tokio::spawn(serve(listener, Arc::new(server(&json)), None));
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    for (path, status) in [("/app-health/a/livez", 500), ("/nope", 404)] {
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = http::Uri::try_from(path).expect("path");
        request
            .headers_mut()
            .insert(HOST, HeaderValue::from_static("pod"));
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status().as_u16(), status, "{path}");
        response.into_body().collect().await.expect("body");
    }
}
