//! `weftctl demo-app`: the small built-in HTTP service the demo and the end-to-end tests run.
//!
//! It answers every request with its service name and version (body and headers), so a
//! caller can tell which version served it. Query parameters shape the answer:
//! `delay_ms=N` waits before answering, `status=N` picks the status code. It serves
//! HTTP/1.1 and h2c on the same port.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

/// What the app says about itself.
#[derive(Clone, Debug)]
pub struct Identity {
    pub service: String,
    pub version: String,
}

/// Serves until the process ends.
pub async fn run(listen: SocketAddr, identity: Identity) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("demo-app: cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, service = %identity.service, version = %identity.version, "demo-app listening");
    let identity = Arc::new(identity);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let identity = identity.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let identity = identity.clone();
                async move { Ok::<_, Infallible>(respond(&identity, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(identity: &Identity, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut status = StatusCode::OK;
    let mut delay = None;
    for (key, value) in query_pairs(req.uri().query().unwrap_or("")) {
        match key {
            "delay_ms" => delay = value.parse().ok().map(Duration::from_millis),
            "status" => {
                if let Some(code) = value
                    .parse()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                {
                    status = code;
                }
            }
            _ => {}
        }
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_owned();
    let path = req.uri().path().to_owned();
    let protocol = format!("{:?}", req.version());
    // Drain the request body so keep-alive connections stay usable.
    let received = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let body = format!(
        "{} {} host={host} path={path} protocol={protocol} received={received}\n",
        identity.service, identity.version
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&identity.service) {
        headers.insert("x-weft-service", v);
    }
    if let Ok(v) = HeaderValue::from_str(&identity.version) {
        headers.insert("x-weft-version", v);
    }
    response
}

fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_split() {
        let pairs: Vec<_> = query_pairs("delay_ms=5&status=503&flag").collect();
        assert_eq!(
            pairs,
            vec![("delay_ms", "5"), ("status", "503"), ("flag", "")]
        );
    }
}
